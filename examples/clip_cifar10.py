"""Train the LiT two-tower CLIP (MiniLM text tower + EfficientNet-Lite0 vision tower, frozen; new projections)
on CIFAR-10 text-image pairs through the default Flow, and measure text-to-image retrieval.

The caption of an image is ``a photo of a <class>``. Training pairs come as a CSV (``image,text`` rows with
image paths relative to the CSV); evaluation pairs are files 0600.. of each class, and each of the ten
captions is a query against every evaluation image (the images of its class are relevant).

    python examples/clip_cifar10.py --data-dir ../shared/data --port 54323
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import cifar10_split, default_flow, follow, metric_table  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=os.environ.get("FINETUNER_DATA_DIR"), help="holds cifar10/")
    parser.add_argument("--port", type=int, default=54323)
    parser.add_argument("--train-per-class", type=int, default=60)
    parser.add_argument("--eval-per-class", type=int, default=50)
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--max-steps", type=int, default=None)
    parser.add_argument("--out", default="outputs/cifar10-clip")
    args = parser.parse_args(argv)
    if not args.data_dir:
        parser.error("give --data-dir (the folder that holds cifar10/) or set FINETUNER_DATA_DIR")
    return args


def write_pairs_csv(target: Path, files: list[tuple[Path, str]]) -> Path:
    """``image,text`` rows, the image paths written relative to the CSV file's folder."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target, "w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(["image", "text"])
        for path, label in files:
            writer.writerow([os.path.relpath(path.resolve(), target.parent.resolve()), f"a photo of a {label}"])
    return target


def main(argv=None) -> int:
    args = parse_args(argv)
    import finetuner

    data, out = Path(args.data_dir), Path(args.out)
    train_csv = write_pairs_csv(out / "train_pairs.csv", cifar10_split(data, 0, args.train_per_class))
    eval_pairs = [(str(path), f"a photo of a {label}") for path, label in cifar10_split(data, 600, args.eval_per_class)]
    with default_flow(args.port, out / "workspace"):
        started = time.perf_counter()
        options = {"max_steps": args.max_steps} if args.max_steps else {}
        run = finetuner.fit(
            model="lit-minilm-efficientnet-lite0",
            train_data=str(train_csv),
            eval_data=eval_pairs,
            image_size=args.image_size,
            epochs=args.epochs,
            batch_size=32,
            learning_rate=1e-3,
            eval_ks=[1, 10, 20],
            **options,
        )
        if not follow(run, started):
            return 1
        print("\nCIFAR-10 text-to-image retrieval (10 captions against the evaluation images):")
        print(metric_table(run.metrics()))
        print(f"\ntuned model saved to {run.save_artifact(out / 'model')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
