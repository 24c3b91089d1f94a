"""Fine-tune all-MiniLM-L6-v2 on STS-B scored sentence pairs through the default Flow, and show the gain in
Spearman correlation.

Starts flow.yml (gRPC on 127.0.0.1:PORT), logs in, writes pairs drawn from STS-B's training set as a
``sentence1,sentence2,score`` CSV (scores 0..5), fits with the scored pairs' default loss (CoSENTLoss), prints the
Spearman and Pearson correlations between the cosine of each test pair and its gold score before and after,
saves the tuned model and stops the Flow.

    python examples/scored_stsb.py --data-dir ../shared/data --port 54324
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
    parser.add_argument("--data-dir", default=os.environ.get("FINETUNER_DATA_DIR"), help="holds stsb/")
    parser.add_argument("--port", type=int, default=int(os.environ.get("FINETUNER_PORT", 54324)))
    parser.add_argument("--train-size", type=int, default=0, help="pairs drawn from sts-train.csv (0: all 5,749)")
    parser.add_argument("--eval-size", type=int, default=0, help="pairs drawn from sts-test.csv (0: all 1,379)")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    parser.add_argument("--max-steps", type=int, default=None)
    parser.add_argument("--out", default="outputs/stsb")
    args = parser.parse_args(argv)
    if not args.data_dir:
        parser.error("give --data-dir (the folder that holds stsb/) or set FINETUNER_DATA_DIR")
    return args


def write_pairs(source: Path, target: Path, size: int, seed: int = 0) -> Path:
    """``size`` pairs drawn at random (all when 0) from an STS-B file, as ``sentence1,sentence2,score`` rows.

    STS-B files are tab-separated without a header: genre, file, year, id, score, sentence1, sentence2 (some
    lines carry extra trailing fields). They are sorted by genre, so the first rows alone would be image captions
    only."""
    with open(source, encoding="utf-8") as file:
        rows = [line.rstrip("\n").split("\t") for line in file if line.strip()]
    rows = random.Random(seed).sample(rows, size) if 0 < size < len(rows) else rows
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target, "w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(["sentence1", "sentence2", "score"])
        writer.writerows([row[5], row[6], row[4]] for row in rows)
    return target


def main(argv=None) -> int:
    args = parse_args(argv)
    import finetuner

    data, out = Path(args.data_dir) / "stsb", Path(args.out)
    train_csv = write_pairs(data / "sts-train.csv", out / "train_pairs.csv", args.train_size)
    eval_csv = write_pairs(data / "sts-test.csv", out / "eval_pairs.csv", args.eval_size)
    print("data:", finetuner.check_data(str(train_csv), str(eval_csv), monitor="spearman"))
    with default_flow(args.port, out / "workspace"):
        started = time.perf_counter()
        options = {"max_steps": args.max_steps} if args.max_steps else {}
        run = finetuner.fit(
            train_data=str(train_csv),
            eval_data=str(eval_csv),
            epochs=args.epochs,
            batch_size=args.batch_size,
            precision=args.precision,
            monitor="spearman",
            **options,
        )
        if not follow(run, started):
            return 1
        print("\nSTS-B test: correlation of each pair's cosine with its gold score (0..5):")
        print(metric_table(run.metrics(), ("spearman", "pearson")))
        model_dir = run.save_artifact(out / "model")
        print(f"\ntuned model saved to {model_dir} (loads with SentenceTransformer({str(model_dir)!r}))")
    return 0


if __name__ == "__main__":
    sys.exit(main())
