"""Training throughput: the project's trainer against sentence-transformers' SentenceTransformerTrainer.

    python bench/train_speed.py --steps 10 --rounds 3                    # quick
    python bench/train_speed.py                                          # the figures in docs/BENCHMARKS.md
    python bench/train_speed.py --pairs triplet infonce                  # also the in-batch-negatives pair

Both trainers train all-MiniLM-L6-v2 (the packaged weights, a fresh model each run) on the whole Banking77
training set, batch 64, ``--warmup`` + ``--steps`` optimizer steps, the same torch thread count, fp32, and the
same optimisation settings (AdamW, learning rate 2e-5, 10 % linear warm-up then linear decay, weight decay
0.01, no gradient clipping). sentence-transformers runs with no evaluation, logging, checkpoints or reports, no
dataloader workers and no pinned memory. The pairs (``--pairs``):

- ``triplet``: ours = the default labeled recipe (TripletMarginLoss + TripletMarginMiner "all", class sampler,
  16 classes x 4) against ST = BatchAllTripletLoss with ST's GROUP_BY_LABEL batch sampler. Ours also runs a
  second time with each batch run as one forward pass padded to its longest text (``ours_padded``: the text
  model before packing, ``batching="padded"``), to measure what that change gains.
- ``infonce``: ours = InfoNCELoss (class sampler, every same-label item a positive) against ST =
  MultipleNegativesRankingLoss on (text, another text of its class) pairs, 32 pairs a batch (64 texts) with
  ST's NO_DUPLICATES sampler. A sample is a text embedded in a step: 64 a step for every trainer.

Runs alternate (ours, [ours_padded,] ST, ours, ...) for ``--rounds`` rounds in one process. Timed: the steps
after the ``--warmup`` steps, each from the end of the previous step to its own end (data, tokenisation,
forward, loss, backward, optimizer, the trainer's own bookkeeping). Quality: precision@1 and MRR@10 of each
trained model on a fixed Banking77 test subset (the first ``--test-per-class`` rows of each class; every row a
query against the others), with the project's evaluation code. Then the profile of one step of ours, FLOPs and
MFU (``bench/profile_train.py``). Writes ``bench/results/train_speed.json``,
``bench/results/train_speed.png`` and the training section of ``docs/BENCHMARKS.md``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from datasets import Dataset
from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer
from sentence_transformers.base.sampler import BatchSamplers
from sentence_transformers.sentence_transformer.losses import BatchAllTripletLoss, MultipleNegativesRankingLoss
from sentence_transformers.sentence_transformer.training_args import SentenceTransformerTrainingArguments
from transformers import TrainerCallback

from finetuner_core.callbacks.base import Callback
from finetuner_core.evaluation.evaluate import evaluate_labeled
from finetuner_core.models import ModelOptions, build_model
from finetuner_core.models.families.text import TextEmbeddingModel
from finetuner_core.training.loop import train
from finetuner_core.training.tasks import make_task
from finetuner_protocol.backbones import DEFAULT_TEXT_MODEL, minilm_path
from finetuner_protocol.data.records import LabeledItem

sys.path.insert(0, str(Path(__file__).resolve().parent))
from measure import load_average, machine, ratios, spread  # noqa: E402
from profile_train import (  # noqa: E402
    PHASES,
    banking77,
    count_flops,
    matmul_peak,
    optimizer_variants,
    profile_phases,
    recipe,
    sequence_flops,
    top_operators,
)

ROOT = Path(__file__).resolve().parent.parent
KS = (1, 10)
LEARNING_RATE, WARMUP_RATIO, WEIGHT_DECAY = 2e-5, 0.1, 0.01


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"), help="folder holding banking77/")
    parser.add_argument("--steps", type=int, default=30, help="timed steps of each run")
    parser.add_argument("--warmup", type=int, default=3, help="steps before the timed ones")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each trainer, alternated")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch threads for both")
    parser.add_argument("--pairs", nargs="+", default=["triplet"], choices=["triplet", "infonce"])
    parser.add_argument("--no-padded", action="store_true", help="leave out the ours_padded run")
    parser.add_argument("--test-per-class", type=int, default=20, help="Banking77 test rows of each class")
    parser.add_argument("--flop-batches", type=int, default=4, help="batches FLOPs and tokens are counted on")
    parser.add_argument("--profile-steps", type=int, default=10, help="profiled steps of ours (0: no profile)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "train_speed.json"))
    parser.add_argument("--doc", default=str(ROOT / "docs" / "BENCHMARKS.md"), help="'' to leave the docs alone")
    parser.add_argument("--plot", default=str(ROOT / "bench" / "results" / "train_speed.png"), help="'' for none")
    return parser.parse_args(argv)


# --- timing ---------------------------------------------------------------------------------------------------
@dataclass
class Clock:
    """Wall-clock and CPU seconds at the start of training and at the end of every step."""

    marks: list[tuple[float, float]] = field(default_factory=list)
    threads: list[int] = field(default_factory=list)

    def mark(self) -> None:
        self.marks.append((time.perf_counter(), time.process_time()))
        self.threads.append(torch.get_num_threads())

    def steps(self, skip: int) -> dict[str, list[float]]:
        """Seconds of each step after the first ``skip``."""
        wall = [b[0] - a[0] for a, b in itertools.pairwise(self.marks)]
        cpu = [b[1] - a[1] for a, b in itertools.pairwise(self.marks)]
        return {"wall": wall[skip:], "cpu": cpu[skip:]}


class OurClock(Callback):
    def __init__(self, clock: Clock):
        self.clock = clock

    def on_train_begin(self, state) -> None:
        self.clock.mark()

    def on_step_end(self, state) -> None:
        self.clock.mark()


class STClock(TrainerCallback):
    def __init__(self, clock: Clock):
        self.clock = clock

    def on_train_begin(self, args, state, control, **kwargs) -> None:
        self.clock.mark()

    def on_step_end(self, args, state, control, **kwargs) -> None:
        self.clock.mark()


@dataclass
class Run:
    """One training run: its step seconds, the model it trained, the threads torch used while it ran."""

    seconds: dict[str, list[float]]
    model: TextEmbeddingModel
    threads: list[int]
    total_s: float


# --- the two trainers -----------------------------------------------------------------------------------------
def ours(records: list[LabeledItem], args, loss: str | None = None, batching: str = "auto") -> Run:
    """The project's loop with its default recipe (or another loss), on a fresh packaged MiniLM."""
    model = build_model(DEFAULT_TEXT_MODEL, None, "cpu")
    model.batching = batching
    config = recipe(args.batch_size, args.warmup + args.steps, args.seed, **({"loss": loss} if loss else {}))
    clock, start = Clock(), time.perf_counter()
    train(model, records, config, [OurClock(clock)])
    return Run(clock.steps(args.warmup), model, clock.threads, time.perf_counter() - start)


def st_arguments(output_dir: str, args, batch_size: int, sampler: BatchSamplers):
    """sentence-transformers' training arguments: the same settings as ours, nothing written, nothing evaluated."""
    return SentenceTransformerTrainingArguments(
        output_dir=output_dir,
        max_steps=args.warmup + args.steps,
        per_device_train_batch_size=batch_size,
        learning_rate=LEARNING_RATE,
        warmup_steps=WARMUP_RATIO,
        lr_scheduler_type="linear",
        weight_decay=WEIGHT_DECAY,
        max_grad_norm=0.0,
        batch_sampler=sampler,
        seed=args.seed,
        use_cpu=True,
        bf16=False,
        eval_strategy="no",
        save_strategy="no",
        logging_strategy="no",
        report_to="none",
        disable_tqdm=True,
        dataloader_num_workers=0,
        dataloader_pin_memory=False,
        dataloader_drop_last=True,
    )


def st_dataset(records: list[LabeledItem], pair: str, seed: int) -> Dataset:
    """(text, label) rows for the triplet pair; (anchor, positive) rows of one class for the InfoNCE pair."""
    if pair == "triplet":
        ids = {label: i for i, label in enumerate(sorted({r.label for r in records}))}
        return Dataset.from_dict({"text": [r.content for r in records], "label": [ids[r.label] for r in records]})
    by_class: dict[str, list[str]] = {}
    for record in records:
        by_class.setdefault(record.label, []).append(record.content)
    rng = random.Random(seed)
    positives = [rng.choice([t for t in by_class[r.label] if t != r.content] or [r.content]) for r in records]
    return Dataset.from_dict({"anchor": [r.content for r in records], "positive": positives})


def st_trainer(records, args, pair: str, output_dir: str, callbacks=()) -> SentenceTransformerTrainer:
    """A SentenceTransformerTrainer on a fresh MiniLM loaded from the same packaged folder."""
    st = SentenceTransformer(str(minilm_path()), device="cpu", local_files_only=True)
    if pair == "triplet":
        loss, sampler, batch = BatchAllTripletLoss(st), BatchSamplers.GROUP_BY_LABEL, args.batch_size
    else:
        loss, sampler, batch = MultipleNegativesRankingLoss(st), BatchSamplers.NO_DUPLICATES, args.batch_size // 2
    return SentenceTransformerTrainer(
        model=st,
        args=st_arguments(output_dir, args, batch, sampler),
        train_dataset=st_dataset(records, pair, args.seed),
        loss=loss,
        callbacks=list(callbacks),
    )


def sentence_transformers(records: list[LabeledItem], args, pair: str) -> Run:
    clock, start = Clock(), time.perf_counter()
    with tempfile.TemporaryDirectory() as output_dir:
        trainer = st_trainer(records, args, pair, output_dir, [STClock(clock)])
        trainer.train()
    wrapped = TextEmbeddingModel(trainer.model, "sentence-transformers trained", ModelOptions())
    return Run(clock.steps(args.warmup), wrapped.eval(), clock.threads, time.perf_counter() - start)


def variants(pair: str, records, args) -> dict[str, Callable[[], Run]]:
    if pair == "infonce":
        return {
            "ours": lambda: ours(records, args, "InfoNCELoss"),
            "st": lambda: sentence_transformers(records, args, pair),
        }
    runs = {"ours": lambda: ours(records, args)}
    if not args.no_padded:
        runs["ours_padded"] = lambda: ours(records, args, batching="padded")
    runs["st"] = lambda: sentence_transformers(records, args, pair)
    return runs


# --- one pair: alternated runs, their speed and quality -------------------------------------------------------
def compare(pair: str, records, test, args, peaks: list[dict]) -> dict:
    """The pair's trainers run in turn for ``args.rounds`` rounds; the matmul peak is measured after each round."""
    runs = variants(pair, records, args)
    keys = ("wall", "cpu", "samples_per_s", "samples_per_s_median_step", "samples_per_cpu_s", "quality", "threads")
    results = {name: {key: [] for key in keys} for name in runs}
    for round_ in range(args.rounds):
        for name, fn in runs.items():
            run = fn()
            entry = results[name]
            entry["wall"].append(run.seconds["wall"])
            entry["cpu"].append(run.seconds["cpu"])
            entry["samples_per_s"].append(args.batch_size * len(run.seconds["wall"]) / sum(run.seconds["wall"]))
            entry["samples_per_s_median_step"].append(args.batch_size / statistics.median(run.seconds["wall"]))
            entry["samples_per_cpu_s"].append(args.batch_size * len(run.seconds["cpu"]) / sum(run.seconds["cpu"]))
            entry["threads"].append(sorted(set(run.threads)))
            entry["quality"].append(_quality(run.model, test))
            print(
                f"{pair} round {round_ + 1} {name}: {entry['samples_per_s'][-1]:.1f} samples/s, "
                f"quality {entry['quality'][-1]}, load {load_average()}",
                flush=True,
            )
            del run
        peaks.append(matmul_peak())
    for entry in results.values():
        entry["samples_per_s_spread"] = spread(entry["samples_per_s"])
        entry["samples_per_s_median_step_spread"] = spread(entry["samples_per_s_median_step"])
        entry["quality_median"] = {k: statistics.median(q[k] for q in entry["quality"]) for k in entry["quality"][0]}
    ratio = {
        "ours_vs_st": spread(ratios(results["ours"]["samples_per_s"], results["st"]["samples_per_s"])),
        "ours_vs_st_median_step": spread(
            ratios(results["ours"]["samples_per_s_median_step"], results["st"]["samples_per_s_median_step"])
        ),
        "ours_vs_st_cpu": spread(ratios(results["ours"]["samples_per_cpu_s"], results["st"]["samples_per_cpu_s"])),
    }
    if "ours_padded" in results:
        ratio["ours_vs_ours_padded"] = spread(
            ratios(results["ours"]["samples_per_s"], results["ours_padded"]["samples_per_s"])
        )
        ratio["ours_padded_vs_st"] = spread(
            ratios(results["ours_padded"]["samples_per_s"], results["st"]["samples_per_s"])
        )
    return {"runs": results, "ratio": ratio}


def _quality(model: TextEmbeddingModel, test: list[LabeledItem]) -> dict[str, float]:
    metrics = evaluate_labeled(model, test, KS)
    return {"precision@1": metrics["precision@1"], "mrr@10": metrics["mrr@10"]}


def test_subset(data: str, per_class: int) -> list[LabeledItem]:
    """The first ``per_class`` rows of each class of Banking77's test split, in file order."""
    taken: dict[str, int] = {}
    subset = []
    for record in banking77(data, "test"):
        if taken.get(record.label, 0) < per_class:
            taken[record.label] = taken.get(record.label, 0) + 1
            subset.append(record)
    return subset


# --- FLOPs, tokens, MFU ---------------------------------------------------------------------------------------
def batch_work(lengths: list[int], shapes: list[tuple[int, int]], st, cache: dict) -> dict:
    """Tokens and forward + backward FLOPs of one batch: ``lengths`` the texts' token counts, ``shapes`` the
    (rows, width) of each forward pass it runs as. FLOPs are linear in the rows of a pass, so a pass costs its rows
    times the FLOPs of one row of its width (``sequence_flops``); *unpadded* is every text run alone."""
    return {
        "texts": len(lengths),
        "tokens": sum(lengths),
        "tokens_fed": sum(rows * width for rows, width in shapes),
        "flops": sum(rows * sequence_flops(st, width, cache) for rows, width in shapes),
        "flops_unpadded": sum(sequence_flops(st, n, cache) for n in lengths),
    }


def our_batches_work(records, args, pair: str, cache: dict, batching: str = "auto") -> dict:
    """Tokens and FLOPs of ours on the batches of the runs (same sampler, same seed), and the check of the FLOPs
    against FlopCounterMode over whole training steps (forward + backward of the task's loss) on the first few."""
    model = build_model(DEFAULT_TEXT_MODEL, None, "cpu").train()
    model.batching = batching
    changes = {"loss": "InfoNCELoss"} if pair == "infonce" else {}
    task = make_task(records, recipe(args.batch_size, args.warmup + args.steps, args.seed, **changes), model)
    work, counted = [], []
    for index, batch in enumerate(list(task.sampler)[: args.warmup + args.steps]):
        lengths = model.preprocess([task.contents[i] for i in batch])["attention_mask"].sum(dim=1).tolist()
        work.append(batch_work(lengths, model.forward_shapes(lengths), model.st, cache))
        if index < args.flop_batches:
            counted.append(count_flops(lambda b=batch: task.loss(model, b)) / work[-1]["flops"])
            model.zero_grad(set_to_none=True)
    return _summary(work[args.warmup :], counted)


def st_batches_work(records, args, pair: str, cache: dict) -> dict:
    """The same for sentence-transformers' trainer, on the batches of its own dataloader."""
    work, counted = [], []
    with tempfile.TemporaryDirectory() as output_dir:
        trainer = st_trainer(records, args, pair, output_dir)
        trainer.model.train()
        for index, batch in enumerate(itertools.islice(trainer.get_train_dataloader(), args.warmup + args.steps)):
            masks = [v for k, v in batch.items() if k.endswith("attention_mask")]
            lengths = [n for mask in masks for n in mask.sum(dim=1).tolist()]
            work.append(batch_work(lengths, [tuple(mask.shape) for mask in masks], trainer.model, cache))
            if index < args.flop_batches:
                loss = lambda b=batch: trainer.compute_loss(trainer.model, dict(b))  # noqa: E731
                counted.append(count_flops(loss) / work[-1]["flops"])
                trainer.model.zero_grad(set_to_none=True)
    return _summary(work[args.warmup :], counted)


def _summary(work: list[dict], counted: list[float]) -> dict:
    """Means per timed step, and how FlopCounterMode's count of whole steps compares with the per-pass sum."""
    mean = {key: statistics.mean(w[key] for w in work) for key in work[0]}
    return mean | {"batches": len(work), "counted_over_computed": counted}


def mfu(work: dict, samples_per_s: list[float], peak_flops: float) -> dict:
    """Model FLOPs per second over the peak: executed FLOPs, and the FLOPs the texts need with no padding.
    ``samples_per_s``: from each run's median step (the trainer's speed when it has the cores, as the peak is)."""
    per_text, unpadded = work["flops"] / work["texts"], work["flops_unpadded"] / work["texts"]
    return {
        "executed": spread([per_text * s / peak_flops for s in samples_per_s]),
        "unpadded": spread([unpadded * s / peak_flops for s in samples_per_s]),
        "achieved_flops_median": per_text * statistics.median(samples_per_s),
    }


def flops_and_mfu(pair: str, records, args, compared: dict, peak: float) -> dict:
    cache: dict[int, int] = {}
    work = {"ours": our_batches_work(records, args, pair, cache), "st": st_batches_work(records, args, pair, cache)}
    runs = compared["runs"]
    result = {
        name: {"work": w, "mfu": mfu(w, runs[name]["samples_per_s_median_step"], peak)} for name, w in work.items()
    }
    if "ours_padded" in runs:
        padded = our_batches_work(records, args, pair, cache, batching="padded")
        result["ours_padded"] = {
            "work": padded,
            "mfu": mfu(padded, runs["ours_padded"]["samples_per_s_median_step"], peak),
        }
    return result


# --- main -----------------------------------------------------------------------------------------------------
def main(argv=None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    results: dict = {"machine": machine(), "command": " ".join(["python", "bench/train_speed.py", *sys.argv[1:]])}
    results["config"] = {k: v for k, v in vars(args).items() if k not in ("out", "doc", "plot", "data")}
    results["torch"] = {"version": torch.__version__, "threads": torch.get_num_threads()}
    results["load_average_start"] = load_average()
    results["peaks"] = [matmul_peak()]
    records, test = banking77(args.data, "train"), test_subset(args.data, args.test_per_class)
    results["data"] = {"train_rows": len(records), "test_rows": len(test)}
    pretrained = build_model(DEFAULT_TEXT_MODEL, None, "cpu")
    results["pretrained_quality"] = _quality(pretrained, test)
    del pretrained
    print(f"peak {results['peaks'][0]['flops'] / 1e9:.1f} GFLOP/s, pretrained {results['pretrained_quality']}")
    results["pairs"] = {pair: compare(pair, records, test, args, results["peaks"]) for pair in args.pairs}
    results["peaks"].append(matmul_peak())
    peak = max(p["flops"] for p in results["peaks"])
    for pair in args.pairs:
        results["pairs"][pair]["flops"] = flops_and_mfu(pair, records, args, results["pairs"][pair], peak)
    if args.profile_steps:
        results["profile"] = _profiles(records, args)
    results["load_average_end"] = load_average()
    _write(results, args)
    return results


def _profiles(records, args) -> dict:
    config = recipe(args.batch_size, 2 + args.profile_steps, args.seed)
    profile = {
        **{mode: profile_phases(records, config, args.profile_steps, 2, mode) for mode in PROFILED},
        "optimizer": optimizer_variants(),
        "operators": top_operators(records, recipe(args.batch_size, 3, args.seed)),
    }
    print(f"profile: {json.dumps(profile['packed']['median_s'])}", flush=True)
    return profile


def _write(results: dict, args) -> None:
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    if args.plot:
        plot(results, Path(args.plot))
    if args.doc:
        link = os.path.relpath(args.plot, Path(args.doc).parent) if args.plot else None
        write_section(Path(args.doc), results, link)
    print(f"written: {args.out}" + (f", {args.doc}" if args.doc else "") + (f", {args.plot}" if args.plot else ""))


# --- the docs section and the plot ----------------------------------------------------------------------------
BEGIN, END = "<!-- training:begin -->", "<!-- training:end -->"
TARGET = 1.25
PROFILED = {"packed": "packed (default)", "grouped": "length-grouped", "padded": "padded (before)"}
NAMES = {
    "ours": "ours (packed batches)",
    "ours_padded": "ours, each batch padded to its longest text (before)",
    "st": "sentence-transformers `SentenceTransformerTrainer`",
}
PAIRS = {
    "triplet": "TripletMarginLoss + miner 'all', class sampler vs ST BatchAllTripletLoss, GROUP_BY_LABEL",
    "infonce": "InfoNCELoss, class sampler vs ST MultipleNegativesRankingLoss on same-class pairs, NO_DUPLICATES",
}


def write_section(path: Path, results: dict, plot_name: str | None) -> None:
    """Replace (or append) the training section of ``path``; the rest of the file is left as it is."""
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n"
    section = f"{BEGIN}\n{render(results, plot_name)}{END}"
    if BEGIN in text and END in text:
        text = text[: text.index(BEGIN)] + section + text[text.index(END) + len(END) :]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    path.write_text(text, encoding="utf-8")


def render(r: dict, plot_name: str | None) -> str:
    parts = [_intro(r), *(_pair(name, pair, r) for name, pair in r["pairs"].items())]
    if "profile" in r:
        parts.append(_profile(r["profile"], r["pairs"].get("triplet")))
    parts += [_flops(r), _waste(r)]
    if plot_name:
        parts.append(f"![samples/s per run and the phases of a step]({plot_name})\n")
    parts.append(NOT_SHOWN)
    return "\n".join(parts)


def _intro(r: dict) -> str:
    m, c = r["machine"], r["config"]
    return f"""## Training throughput

`{r["command"]}` on {m["nproc"]} CPU cores ({m["cpu"]}, {m["memory_gib"]} GiB), torch {r["torch"]["version"]} with
{r["torch"]["threads"]} threads for both trainers, Python {m["python"]}, {m["date"]}. Load average (1, 5, 15 min)
{r["load_average_start"]} at the start, {r["load_average_end"]} at the end: other processes shared the cores.
all-MiniLM-L6-v2 (packaged weights, a fresh model each run) on the whole Banking77 training set
({r["data"]["train_rows"]:,} rows), batch {c["batch_size"]}, {c["warmup"]} warm-up + {c["steps"]} timed steps a
run, {c["rounds"]} rounds, runs alternated; fp32; AdamW, learning rate 2e-5, 10 % warm-up then linear decay,
weight decay 0.01, no clipping, for both (each trainer's own AdamW implementation: torch's default for ours,
`adamw_torch_fused` for sentence-transformers). Quality: precision@1 and MRR@10 on the first
{c["test_per_class"]} test rows of each class ({r["data"]["test_rows"]:,} queries, each against all the others),
with `evaluate_labeled`; before training: P@1 {r["pretrained_quality"]["precision@1"]:.4f}, MRR@10
{r["pretrained_quality"]["mrr@10"]:.4f}. Raw figures in `bench/results/train_speed.json`.

samples/s = texts of the timed steps / their seconds (every step, however busy the machine was); *from the median
step* = 64 / the run's median step: a load burst that stalls a few steps moves it less. The ratios pair the
runs of one round.
"""


def _pair(name: str, pair: dict, r: dict) -> str:
    runs, ratio = pair["runs"], pair["ratio"]
    lines = [
        f"### {name}: {PAIRS[name]}",
        "",
        "| trainer | samples/s min | median | max | from the median step: min | median | max | "
        "P@1 (median) | MRR@10 (median) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for trainer, entry in runs.items():
        s, m, q = entry["samples_per_s_spread"], entry["samples_per_s_median_step_spread"], entry["quality_median"]
        lines.append(
            f"| {NAMES[trainer]} | {s['min']:.1f} | {s['median']:.1f} | {s['max']:.1f} | {m['min']:.1f} | "
            f"{m['median']:.1f} | {m['max']:.1f} | {q['precision@1']:.4f} | {q['mrr@10']:.4f} |"
        )
    lines += ["", "| ratio of samples/s, run by run | min | median | max |", "| --- | --- | --- | --- |"]
    labels = {
        "ours_vs_st": "ours / sentence-transformers",
        "ours_vs_st_median_step": "ours / sentence-transformers, from the median step",
        "ours_vs_st_cpu": "ours / sentence-transformers, samples per CPU second",
        "ours_vs_ours_padded": "ours / ours padded (gain of packing)",
        "ours_padded_vs_st": "ours padded / sentence-transformers",
    }
    for key, value in ratio.items():
        lines.append(f"| {labels[key]} | {value['min']:.2f} | {value['median']:.2f} | {value['max']:.2f} |")
    verdict = "met" if ratio["ours_vs_st"]["median"] >= TARGET else "NOT met"
    ours_q, st_q = runs["ours"]["quality_median"], runs["st"]["quality_median"]
    worse = [k for k in ours_q if ours_q[k] < st_q[k]]
    quality = "equal or better on both metrics" if not worse else f"worse on {', '.join(worse)}"
    lines += [
        "",
        f"Target ours / ST >= {TARGET} (samples/s over the timed steps, median of the rounds): **{verdict}** "
        f"(median {ratio['ours_vs_st']['median']:.2f}, min {ratio['ours_vs_st']['min']:.2f}). Quality after the "
        f"same steps: ours {quality}. Threads seen during the runs: "
        f"{sorted({t for e in runs.values() for ts in e['threads'] for t in ts})}.",
        "",
    ]
    return "\n".join(lines)


def _profile(profile: dict, triplet: dict | None) -> str:
    first = profile["packed"]
    lines = [
        "### Where a step of ours goes",
        "",
        f"`bench/profile_train.py`: the loop's parts (task, optimizer, schedule) run one phase at a time, "
        f"{first['steps']} steps after {first['warmup']} warm-up steps, median of each phase (ms), for each way "
        "the text model can run a batch (the profiles run one after the other, not alternated).",
        "",
        "| phase | " + " | ".join(f"{label} | share" for label in PROFILED.values()) + " |",
        "| --- " * (1 + 2 * len(PROFILED)) + "|",
    ]
    for phase in PHASES:
        cells = [f"{profile[m]['median_s'][phase] * 1000:.1f} | {profile[m]['share'][phase]:.1%}" for m in PROFILED]
        lines.append(f"| {phase.replace('_', ' ')} | " + " | ".join(cells) + " |")
    lines.append(
        "| sum of medians | " + " | ".join(f"{profile[m]['sum_of_medians_s'] * 1000:.0f} | " for m in PROFILED) + "|"
    )
    if triplet:
        steps = {n: statistics.median(s for run in e["wall"] for s in run) for n, e in triplet["runs"].items()}
        padded_step = f", padded {steps['ours_padded'] * 1000:.0f} ms" if "ours_padded" in steps else ""
        lines += [
            "",
            f"For comparison, the median step of the real loop in the triplet runs above: packed "
            f"{steps['ours'] * 1000:.0f} ms{padded_step} (every step of every round, as busy as the machine was).",
        ]
    ops = ", ".join(f"`{op['name']}` {op['share']:.0%}" for op in profile["operators"][:8])
    opt = profile["optimizer"]["median_s"]
    lines += [
        "",
        f"Operators by self CPU time over 3 steps of the real loop (`torch.profiler`): {ops}.",
        "",
        f"The optimizer phase alone, on MiniLM's {profile['optimizer']['parameters'] / 1e6:.1f} M parameters: "
        f"gradient norm {opt['grad_norm'] * 1000:.0f} ms (the loop computes it every step, clipping or not); "
        f"AdamW as the recipe builds it {opt['adamw_default'] * 1000:.0f} ms, with `foreach=True` "
        f"{opt['adamw_foreach'] * 1000:.0f} ms, with `fused=True` {opt['adamw_fused'] * 1000:.0f} ms.",
        "",
    ]
    return "\n".join(lines)


def _flops(r: dict) -> str:
    first, flops = r["peaks"][0], [p["flops"] / 1e9 for p in r["peaks"]]
    lines = [
        "### FLOPs and MFU",
        "",
        f"Peak: a {first['size']} x {first['size']} fp32 `torch.matmul`, {first['threads']} threads, best of "
        f"{first['repeats']}, measured {len(flops)} times (at the start, after each round, at the end): "
        f"{min(flops):.1f} to {max(flops):.1f} GFLOP/s as the load changed; MFU is against the highest, "
        f"{max(flops):.1f} GFLOP/s, and uses each run's median step (the speed of a trainer that has the cores, "
        "as the peak is). FLOPs per step: the mean over the timed steps' batches (each trainer's own sampler, "
        "the seed of the runs) of forward + backward FLOPs, each forward pass counted as its rows times the "
        "`FlopCounterMode` count of one row of its width; *unpadded*: the same texts each run alone (no padding "
        "at all), the work the step needs. " + _check(r),
        "",
        "| pair | trainer | tokens / step | fed (with padding) | GFLOP / step executed | unpadded | "
        "achieved GFLOP/s | MFU executed | MFU unpadded |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, pair in r["pairs"].items():
        for trainer, entry in pair["flops"].items():
            w, u = entry["work"], entry["mfu"]
            fed = w["tokens_fed"]
            lines.append(
                f"| {name} | {NAMES[trainer]} | {w['tokens']:.0f} | {fed:.0f} | {w['flops'] / 1e9:.0f} | "
                f"{w['flops_unpadded'] / 1e9:.0f} | {u['achieved_flops_median'] / 1e9:.1f} | "
                f"{u['executed']['median']:.1%} | {u['unpadded']['median']:.1%} |"
            )
    lines += [
        "",
        "MFU executed = FLOPs the step runs / median step time / peak; MFU unpadded counts only the FLOPs the "
        "texts need, so it compares trainers on useful work.",
        "",
    ]
    return "\n".join(lines)


def _check(r: dict) -> str:
    """How FlopCounterMode over whole real steps compares with the per-pass sum."""
    ratios_ = [
        x for pair in r["pairs"].values() for e in pair["flops"].values() for x in e["work"]["counted_over_computed"]
    ]
    return (
        f"Check: `FlopCounterMode` over whole steps (forward + backward of each trainer's loss) on the first "
        f"{r['config']['flop_batches']} batches of each gives {min(ratios_):.4f} to {max(ratios_):.4f} times that sum "
        "(the rest is the loss and the pooling)."
    )


def _waste(r: dict) -> str:
    work = r["pairs"]["triplet"]["flops"] if "triplet" in r["pairs"] else None
    fed = ""
    if work and "ours_padded" in work:
        ours, padded = work["ours"]["work"], work["ours_padded"]["work"]
        fed = (
            f" On the counted batches: {ours['tokens']:.0f} tokens of text a step, {padded['tokens_fed']:.0f} fed "
            f"padded, {ours['tokens_fed']:.0f} packed."
        )
    return f"""### The waste removed, and what is left

- **Padding** (removed, `families/text.py`): Banking77 texts are 16 tokens on average, but a batch of 64 was padded
  to its longest text, so most of every forward and backward pass worked on padding. The text model now packs
  the texts of a batch end to end into rows as wide as its longest text (first fit, longest first), each text with
  its own positions and token types and a block-diagonal attention mask, and runs them in one forward pass; the
  token embeddings go back to the padded layout for the chain's own pooling.{fed} Encoders that cannot take
  position ids and a 4D mask (not BERT-type, or not SDPA attention) run the batch in groups of similar length
  instead, one forward pass per group. Packing is the default because it keeps one forward pass per step: with
  several passes the number of operators per step triples, and when other processes hold the cores every operator
  waits for both threads to be scheduled, which cost the grouped version most of its gain under heavy load.
  Embeddings and gradients are those of the padded batch within float rounding (`tests/unit/test_text_model.py`);
  in training mode dropout draws other masks, as it does for any other batch order.
- **Tokenisation** (kept): a few ms a batch, under 1 % of a step (the profile); caching token ids would save
  nothing measurable. `max_seq_length` stays the model's 256: no Banking77 text comes near it, and a shorter one
  would change the embeddings of long texts.
- **Frozen parts** (nothing to do): frozen parameters have `requires_grad=False` and get no gradient; the recipe
  freezes nothing.
- **Outside the model** (`training/loop.py`, `training/optimizers.py`, not changed here): the gradient norm is
  computed every step even without clipping, and AdamW runs torch's default CPU implementation; the optimizer
  figures above give what `fused=True` (already reachable through `optimizer_options`) or skipping the norm would
  save a step.
"""


NOT_SHOWN = """What these figures do not show:

- A quiet machine: other processes used the same 2 cores (load averages above), so absolute samples/s and the
  profile's milliseconds move from run to run. The trainers alternate run by run, so each ratio compares runs
  that saw similar load; the profile and the FLOP counts are single passes, not alternated.
- Longer training: 30 steps of 64 texts is a throughput test, not a recipe; the quality columns show that the
  speed does not cost quality after the same number of steps, not which recipe is best.
- Other data: the gain depends on how much the texts of a batch differ in length; texts all near the batch's
  longest leave little padding to remove.
- GPUs and bf16: fp32 on the CPU only. On this CPU the recipe's `precision="auto"` picks bf16 (it has
  AVX512-BF16), which these figures do not measure; MFU is against the fp32 matmul peak.
- Setup: model loading, the trainers' construction and the evaluation are outside the timed steps.
"""


def plot(results: dict, path: Path) -> None:
    """Samples/s of every run by round, and the phases of a step of ours (packed, grouped, padded)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = len(results["pairs"]) + int("profile" in results)
    figure, axes = plt.subplots(1, panels, figsize=(5.5 * panels, 4), squeeze=False)
    colours = {"ours": "C0", "ours_padded": "C1", "st": "C2"}
    for axis, (name, pair) in zip(axes[0], results["pairs"].items(), strict=False):
        for trainer, entry in pair["runs"].items():
            rounds = range(1, len(entry["samples_per_s"]) + 1)
            label, colour = NAMES[trainer].replace("`", ""), colours[trainer]
            axis.plot(rounds, entry["samples_per_s"], marker="o", color=colour, label=label)
            axis.plot(rounds, entry["samples_per_s_median_step"], marker="x", linestyle=":", color=colour)
        axis.set_xticks(list(rounds))
        axis.set(title=f"{name}: samples/s per round (x: from the median step)", xlabel="round", ylabel="samples/s")
        axis.set_ylim(bottom=0)
        axis.legend(fontsize=7)
    if "profile" in results:
        _plot_profile(axes[0][-1], results["profile"])
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _plot_profile(axis, profile: dict) -> None:
    columns = PROFILED
    for x, key in enumerate(columns):
        bottom = 0.0
        for colour, phase in enumerate(PHASES):
            ms = profile[key]["median_s"][phase] * 1000
            label = phase.replace("_", " ") if x == 0 else None
            axis.bar(x, ms, bottom=bottom, color=f"C{colour}", label=label)
            bottom += ms
    axis.set_xticks(range(len(columns)), list(columns.values()))
    axis.set(title="one step of ours, median ms by phase", ylabel="ms")
    axis.legend(fontsize=7)


if __name__ == "__main__":
    main()
