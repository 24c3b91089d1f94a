"""Fine-tune all-MiniLM-L6-v2 on Banking77 through the default Flow, and show the retrieval gain.

Starts flow.yml (gRPC on 127.0.0.1:PORT), logs in, fits on a random slice of the Banking77 training set,
streams the logs, prints the before/after retrieval metrics on the Banking77 test set (every test row is a
query against all the others; same category = relevant), saves the tuned model and stops the Flow.

    python examples/text_banking77.py --data-dir ../shared/data --port 54321
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import sys
import time
from pathlib import Path

os.environ.setdefault("JINA_OPTOUT_TELEMETRY", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import default_flow, follow, metric_table  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--data-dir",
        default=os.environ.get("FINETUNER_DATA_DIR"),
        help="folder holding banking77/ (default: $FINETUNER_DATA_DIR)",
    )
    parser.add_argument("--port", type=int, default=int(os.environ.get("FINETUNER_PORT", 54321)))
    parser.add_argument("--train-size", type=int, default=3200, help="training rows drawn from train.csv")
    parser.add_argument("--eval-size", type=int, default=0, help="test rows to evaluate on (0: all 3,080)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--max-steps", type=int, default=None)
    parser.add_argument("--out", default="outputs/banking77", help="where the slices and the model go")
    parser.add_argument("--workspace", default=None, help="the Flow's workspace (default: OUT/workspace)")
    args = parser.parse_args(argv)
    if not args.data_dir:
        parser.error("give --data-dir (the folder that holds banking77/) or set FINETUNER_DATA_DIR")
    return args


def write_slice(source: Path, target: Path, size: int, seed: int) -> Path:
    """A stratified random slice of about ``size`` rows of a ``text,category`` CSV (all rows when 0):
    the same number of rows from every category, so every class keeps enough items for the sampler."""
    with open(source, newline="", encoding="utf-8") as file:
        rows = list(csv.reader(file))
    header, body = rows[0], rows[1:]
    if 0 < size < len(body):
        by_class: dict[str, list] = {}
        for row in body:
            by_class.setdefault(row[1], []).append(row)
        per_class = max(2, size // len(by_class))
        rng = random.Random(seed)
        body = [
            row
            for label in sorted(by_class)
            for row in rng.sample(by_class[label], min(per_class, len(by_class[label])))
        ]
        rng.shuffle(body)
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target, "w", newline="", encoding="utf-8") as file:
        csv.writer(file).writerows([header, *body])
    return target


def main(argv=None) -> int:
    args = parse_args(argv)
    import finetuner

    out = Path(args.out)
    data = Path(args.data_dir) / "banking77"
    train_csv = write_slice(data / "train.csv", out / "train_slice.csv", args.train_size, seed=0)
    eval_csv = write_slice(data / "test.csv", out / "eval_slice.csv", args.eval_size, seed=1)
    with default_flow(args.port, Path(args.workspace or out / "workspace")):
        started = time.perf_counter()
        options = {"max_steps": args.max_steps} if args.max_steps else {}
        run = finetuner.fit(train_data=train_csv, eval_data=eval_csv, epochs=args.epochs, **options)
        if not follow(run, started):
            return 1
        print("\nBanking77 test retrieval (queries = test rows, relevant = same category):")
        print(metric_table(run.metrics()))
        model_dir = run.save_artifact(out / "model")
        print(f"\ntuned model saved to {model_dir} (loads with SentenceTransformer({str(model_dir)!r}))")
    return 0


if __name__ == "__main__":
    sys.exit(main())
