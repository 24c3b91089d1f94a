"""Quality before -> after fine-tuning with the default recipe, on real data, through the project's core.

    python bench/quality.py                       # every benchmark at the documented budget
    python bench/quality.py --quick               # a reduced run (fewer steps, smaller evaluation sets)
    python bench/quality.py --only banking77 stsb # some of them (BENCHMARKS lists the names)

Each benchmark builds the model (``build_model``), settles the data shape's default loss (``settle_fit``),
evaluates, trains (``training.loop.train``) and evaluates again with the project's evaluation
(``evaluate_labeled`` / ``evaluate_pairs``), as a run on the Flow does, without the Flow. The settings are the
FitConfig defaults except those listed per benchmark (a user sets them the same way). For Banking77 and STS-B
the same budget (data, steps, batch size, learning rate, warm-up, weight decay, seed, fp32) also trains a fresh
MiniLM with sentence-transformers' own SentenceTransformerTrainer, evaluated by the same code.

Writes ``bench/results/quality_<name>.json`` per benchmark, ``bench/results/quality.png`` and the Quality
section of ``docs/BENCHMARKS.md`` (from every quality_*.json present).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quality_data import banking77_slice, cifar10_images, cifar10_pairs, stsb  # noqa: E402
from quality_report import DOC, RESULTS, describe_machine, plot, write_section  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
KS = (1, 10, 20)
# What both trainers share and a user would set alike: fp32 on the CPU (sentence-transformers trains in fp32
# here; the default 'auto' precision would pick bf16 on CPUs with bf16 instructions).
COMMON = {"device": "cpu", "precision": "fp32", "seed": 42}


@dataclass(frozen=True)
class Budget:
    """What one benchmark trains and evaluates on, at the documented size and at --quick."""

    settings: dict  # FitConfig fields set besides COMMON (the rest are the defaults)
    train_size: int
    eval_size: int


@dataclass(frozen=True)
class Benchmark:
    title: str
    model: str
    metric_names: tuple[str, ...]
    full: Budget
    quick: Budget
    data: Callable[[Path, Budget], tuple[list, list, dict]]  # (train records, eval records, data description)
    st: str | None  # the sentence-transformers loss compared with, or why it does not apply
    st_applies: bool


RETRIEVAL = ("precision@1", "mrr@20", "map@20", "ndcg@20")
BENCHMARKS: dict[str, Benchmark] = {
    "banking77": Benchmark(
        title="Banking77 intent retrieval (text, 77 classes)",
        model="all-MiniLM-L6-v2",
        metric_names=RETRIEVAL,
        full=Budget({"max_steps": 40}, train_size=40, eval_size=20),
        quick=Budget({"max_steps": 8}, train_size=8, eval_size=6),
        data=lambda d, b: banking77_slice(d, b.train_size, b.eval_size),
        st="BatchAllTripletLoss, GROUP_BY_LABEL batches",
        st_applies=True,
    ),
    "stsb": Benchmark(
        title="STS-B similarity (scored text pairs)",
        model="all-MiniLM-L6-v2",
        metric_names=("spearman", "pearson"),
        full=Budget({"max_steps": 40}, train_size=0, eval_size=0),
        quick=Budget({"max_steps": 8}, train_size=1000, eval_size=300),
        data=lambda d, b: stsb(d, b.train_size, b.eval_size),
        st="CoSENTLoss",
        st_applies=True,
    ),
    "cifar10_image": Benchmark(
        title="CIFAR-10 image retrieval (images, 10 classes)",
        model="efficientnet-lite0",
        metric_names=RETRIEVAL,
        full=Budget(
            {"epochs": 3, "batch_size": 40, "learning_rate": 1e-4, "model_options": {"image_size": 96}},
            train_size=60,
            eval_size=100,
        ),
        quick=Budget(
            {"max_steps": 4, "batch_size": 40, "learning_rate": 1e-4, "model_options": {"image_size": 64}},
            train_size=20,
            eval_size=20,
        ),
        data=lambda d, b: cifar10_images(d, b.train_size, b.eval_size),
        st="does not apply: sentence-transformers trains text models",
        st_applies=False,
    ),
    "cifar10_clip": Benchmark(
        title="CIFAR-10 text-to-image (LiT two-tower CLIP, captions 'a photo of a <class>')",
        model="lit-minilm-efficientnet-lite0",
        metric_names=RETRIEVAL,
        full=Budget(
            {"epochs": 3, "batch_size": 32, "learning_rate": 1e-3, "model_options": {"image_size": 96}},
            train_size=60,
            eval_size=50,
        ),
        quick=Budget(
            {"max_steps": 4, "batch_size": 32, "learning_rate": 1e-3, "model_options": {"image_size": 64}},
            train_size=20,
            eval_size=20,
        ),
        data=lambda d, b: cifar10_pairs(d, b.train_size, b.eval_size),
        st="does not apply: no image tower in sentence-transformers' trainer",
        st_applies=False,
    ),
}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"), help="the shared data folder")
    parser.add_argument("--quick", action="store_true", help="reduced budget (fewer steps, smaller sets)")
    parser.add_argument("--only", nargs="+", choices=list(BENCHMARKS), default=list(BENCHMARKS))
    parser.add_argument("--render", action="store_true", help="only re-render the plot and docs from saved JSON")
    parser.add_argument("--no-st", action="store_true", help="leave out the sentence-transformers runs")
    parser.add_argument("--max-steps", type=int, default=None, help="override every benchmark's steps")
    parser.add_argument("--train-size", type=int, default=None, help="override the training slice's size")
    parser.add_argument("--eval-size", type=int, default=None, help="override the evaluation slice's size")
    parser.add_argument("--seed", type=int, default=None, help=f"override the seed ({COMMON['seed']}) of both trainers")
    parser.add_argument("--results", default=str(RESULTS), help="folder of the JSON results and plot")
    parser.add_argument("--doc", default=str(DOC), help="'' to leave the docs alone")
    return parser.parse_args(argv)


def settings_of(bench: Benchmark, args) -> tuple[dict, Budget]:
    budget = bench.quick if args.quick else bench.full
    settings = {**budget.settings}
    if args.max_steps:
        settings["max_steps"] = args.max_steps
    if args.seed is not None:
        settings["seed"] = args.seed
    if args.train_size is not None:
        budget = replace(budget, train_size=args.train_size)
    if args.eval_size is not None:
        budget = replace(budget, eval_size=args.eval_size)
    return settings, budget


def run_benchmark(name: str, args) -> dict:
    """One benchmark: ours before -> after and, where it applies, sentence-transformers after."""
    from quality_trainers import ours, sentence_transformers

    bench = BENCHMARKS[name]
    settings, budget = settings_of(bench, args)
    train, evaluation, described = bench.data(Path(args.data), budget)
    print(f"{name}: {described}", flush=True)
    result: dict = {
        "name": name,
        "title": bench.title,
        "model": bench.model,
        "metrics": list(bench.metric_names),
        "quick": args.quick,
        "data": described,
        "settings": {**{k: v for k, v in COMMON.items() if k != "device"}, **settings},
        "machine": describe_machine(),
        "command": " ".join(["python", "bench/quality.py", *(sys.argv[1:] if __name__ == "__main__" else [])]),
    }
    start = time.perf_counter()
    result["ours"] = ours(bench.model, train, evaluation, {**COMMON, **settings}, KS)
    result["ours"]["wall_s"] = round(time.perf_counter() - start, 1)
    print(f"{name} ours: {json.dumps({k: v for k, v in result['ours'].items() if k != 'notes'})}", flush=True)
    if bench.st_applies and not args.no_st:
        start = time.perf_counter()
        with tempfile.TemporaryDirectory() as folder:
            result["st"] = sentence_transformers(name, train, evaluation, result["ours"]["config"], KS, folder)
        result["st"]["wall_s"] = round(time.perf_counter() - start, 1)
        result["st"]["loss"] = bench.st
        print(f"{name} st: {json.dumps(result['st'])}", flush=True)
    else:
        result["st"] = {"applies": False, "reason": bench.st} if not bench.st_applies else {"skipped": True}
    return result


def main(argv=None) -> dict:
    args = parse_args(argv)
    folder = Path(args.results)
    folder.mkdir(parents=True, exist_ok=True)
    results = {}
    for name in [] if args.render else args.only:
        results[name] = run_benchmark(name, args)
        (folder / f"quality_{name}.json").write_text(json.dumps(results[name], indent=2) + "\n", encoding="utf-8")
    saved = load_results(folder)
    plot(saved, folder / "quality.png")
    if args.doc:
        write_section(Path(args.doc), saved, "quality.png")
    written = [f"quality_{name}.json" for name in results]
    print(f"written in {folder}: {', '.join([*written, 'quality.png'])}" + (f", {args.doc}" if args.doc else ""))
    return results


def load_results(folder: Path) -> dict:
    """Every saved quality result in ``folder``, in the registry's order."""
    found = {}
    for name in BENCHMARKS:
        path = folder / f"quality_{name}.json"
        if path.exists():
            found[name] = json.loads(path.read_text(encoding="utf-8"))
    return found


if __name__ == "__main__":
    main()
