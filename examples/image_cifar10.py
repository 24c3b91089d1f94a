"""Fine-tune the packaged EfficientNet-Lite0 for CIFAR-10 image retrieval through the default Flow.

Training images are files 0000..(train_per_class - 1) of each class, given as DocList documents with the image
path and the class; evaluation images are files 0600.. of each class (every image a query against the others;
same class = relevant).

    python examples/image_cifar10.py --data-dir ../shared/data --port 54322
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import cifar10_split, default_flow, follow, metric_table  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=os.environ.get("FINETUNER_DATA_DIR"), help="holds cifar10/")
    parser.add_argument("--port", type=int, default=54322)
    parser.add_argument("--train-per-class", type=int, default=60)
    parser.add_argument("--eval-per-class", type=int, default=100)
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--max-steps", type=int, default=None)
    parser.add_argument("--out", default="outputs/cifar10-image")
    args = parser.parse_args(argv)
    if not args.data_dir:
        parser.error("give --data-dir (the folder that holds cifar10/) or set FINETUNER_DATA_DIR")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    from docarray import BaseDoc, DocList

    import finetuner

    class ImageDoc(BaseDoc):
        url: str
        finetuner_label: str

    def docs(first: int, count: int) -> DocList:
        return DocList[ImageDoc](ImageDoc(url=str(p), finetuner_label=c) for p, c in cifar10_split(data, first, count))

    data, out = Path(args.data_dir), Path(args.out)
    with default_flow(args.port, out / "workspace"):
        started = time.perf_counter()
        options = {"max_steps": args.max_steps} if args.max_steps else {}
        run = finetuner.fit(
            model="efficientnet-lite0",
            train_data=docs(0, args.train_per_class),
            eval_data=docs(600, args.eval_per_class),
            image_size=args.image_size,
            epochs=args.epochs,
            batch_size=40,
            num_items_per_class=4,
            learning_rate=1e-4,
            **options,
        )
        if not follow(run, started):
            return 1
        print("\nCIFAR-10 image retrieval (every eval image a query; same class = relevant):")
        print(metric_table(run.metrics()))
        print(f"\ntuned model saved to {run.save_artifact(out / 'model')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
