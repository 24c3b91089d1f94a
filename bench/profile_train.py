"""Where one training step of the project's trainer goes, and how many FLOPs it does.

    python bench/profile_train.py                        # 10 profiled steps after 2 warm-up steps, printed
    python bench/profile_train.py --steps 20 --json out.json

1. Phases: the loop's step taken apart with a timer around each phase, on the same parts the loop builds
   (``make_task``, ``build_optimizer``, ``build_scheduler``): sampling (the task's sampler, labels, contents),
   tokenisation (``model.preprocess``), forward (``model.embed_features``), loss + miner, backward, optimizer
   (gradient norm, ``optimizer.step``, ``zero_grad``, schedule). Median over the profiled steps; on CUDA each
   timer synchronises first.
2. Operators: ``torch.profiler`` over a few steps of the real ``training.loop.train``, the operators that took
   the most time.
3. FLOPs: ``torch.utils.flop_counter.FlopCounterMode`` over a real batch's forward + backward, and the fp32
   matmul peak of this machine (a large square ``torch.matmul``, same thread count) that MFU is measured against.

``bench/train_speed.py`` calls these and writes them into ``bench/results/train_speed.json`` and docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from finetuner_core.config import FitConfig
from finetuner_core.models import build_model
from finetuner_core.training.loop import clip, train
from finetuner_core.training.optimizers import build_optimizer
from finetuner_core.training.schedulers import build_scheduler
from finetuner_core.training.tasks import make_task
from finetuner_protocol.backbones import DEFAULT_TEXT_MODEL
from finetuner_protocol.data.records import LabeledItem

ROOT = Path(__file__).resolve().parent.parent
PHASES = ("sampling", "tokenisation", "forward", "loss_and_miner", "backward", "optimizer")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"), help="folder holding banking77/")
    parser.add_argument("--steps", type=int, default=10, help="profiled steps (after the warm-up)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--json", default="", help="also write the results here")
    return parser.parse_args(argv)


def banking77(data: str | Path, split: str) -> list[LabeledItem]:
    """A Banking77 split as labeled items (text, category), in file order."""
    import csv

    with open(Path(data) / "banking77" / f"{split}.csv", newline="", encoding="utf-8") as file:
        return [LabeledItem(row["text"], row["category"]) for row in csv.DictReader(file)]


def recipe(batch_size: int, steps: int, seed: int, **changes) -> FitConfig:
    """The project's default labeled recipe (TripletMarginLoss + TripletMarginMiner 'all', class sampler), fp32
    on the CPU (``auto`` precision would pick bf16 on a CPU with bf16 instructions)."""
    return FitConfig(batch_size=batch_size, max_steps=steps, seed=seed, precision="fp32", device="cpu", **changes)


class PhaseClock:
    """Seconds per phase of one step; synchronises CUDA before each reading."""

    def __init__(self, device: torch.device):
        self.sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
        self.seconds: dict[str, list[float]] = {phase: [] for phase in PHASES}

    def run(self, phase: str, fn: Callable[[], object]) -> object:
        self.sync()
        start = time.perf_counter()
        result = fn()
        self.sync()
        self.seconds[phase].append(time.perf_counter() - start)
        return result

    def medians(self, skip: int) -> dict[str, float]:
        return {phase: statistics.median(values[skip:]) for phase, values in self.seconds.items()}


def profile_phases(
    records: list[LabeledItem], config: FitConfig, steps: int, warmup: int, batching: str = "auto"
) -> dict:
    """Median seconds of each phase of a step, the loop's parts run one phase at a time (fp32).
    ``batching``: how the text model runs a batch (``TextEmbeddingModel.batching``: packed, grouped, padded)."""
    model = build_model(config.model, config.model_options, "cpu")
    model.batching = batching
    task = make_task(records, config, model)
    optimizer = build_optimizer(model, config)
    scheduler = build_scheduler(optimizer, config.scheduler, config.max_steps, config.warmup_ratio)
    params = [p for group in optimizer.param_groups for p in group["params"]]
    clock, batches = PhaseClock(model.device), iter(task.sampler)
    model.train()
    for _ in range(warmup + steps):
        batch = clock.run("sampling", lambda: next(batches))
        labels, texts = task.class_ids[batch], [task.contents[i] for i in batch]
        features = clock.run("tokenisation", lambda t=texts: model.preprocess(t))
        embeddings = clock.run("forward", lambda f=features: model.embed_features(f))
        loss = clock.run("loss_and_miner", lambda e=embeddings, y=labels: _loss(task, e, y))
        clock.run("backward", loss.backward)
        clock.run("optimizer", lambda: _optimizer_step(optimizer, scheduler, params, config.max_grad_norm))
    phases = clock.medians(warmup)
    total = sum(phases.values())
    return {
        "batching": model.batching_mode(),
        "steps": steps,
        "warmup": warmup,
        "median_s": phases,
        "share": {phase: seconds / total for phase, seconds in phases.items()},
        "sum_of_medians_s": total,
    }


def _loss(task, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    if task.miner is None:
        return task.loss_fn(embeddings, labels)
    return task.loss_fn(embeddings, labels, task.miner(embeddings, labels))


def _optimizer_step(optimizer, scheduler, params, max_grad_norm) -> None:
    clip(params, max_grad_norm)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    scheduler.step()


def top_operators(records: list[LabeledItem], config: FitConfig, count: int = 12) -> list[dict]:
    """The operators that took the most time (self CPU time) over ``config.max_steps`` steps of the real loop."""
    model = build_model(config.model, config.model_options, "cpu")
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profiler:
        train(model, records, config)
    events = sorted(profiler.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events) or 1
    return [
        {
            "name": e.key,
            "self_cpu_s": e.self_cpu_time_total / 1e6,
            "share": e.self_cpu_time_total / total,
            "calls": e.count,
        }
        for e in events[:count]
    ]


def optimizer_variants(repeats: int = 5) -> dict:
    """Median seconds of the optimizer's share of a step over MiniLM's parameters (random gradients): the loop's
    gradient norm, and AdamW as the recipe builds it (torch's default implementation: a loop over the tensors
    on the CPU), with ``foreach=True`` and with ``fused=True`` (``optimizer_options`` can ask for either)."""
    model = build_model(DEFAULT_TEXT_MODEL, None, "cpu")
    params = [p for p in model.parameters() if p.requires_grad]
    for parameter in params:
        parameter.grad = torch.randn_like(parameter) * 1e-3
    seconds = {"grad_norm": statistics.median(_seconds(lambda: clip(params, None)) for _ in range(repeats))}
    for name, options in {"default": {}, "foreach": {"foreach": True}, "fused": {"fused": True}}.items():
        optimizer = torch.optim.AdamW(params, lr=2e-5, **options)
        optimizer.step()  # creates the moment buffers
        seconds[f"adamw_{name}"] = statistics.median(_seconds(optimizer.step) for _ in range(repeats))
    return {"median_s": seconds, "parameters": sum(p.numel() for p in params), "repeats": repeats}


def count_flops(fn: Callable[[], torch.Tensor]) -> int:
    """FLOPs that ``fn`` (returning a loss) and the backward pass of its result do, as FlopCounterMode counts them
    (matrix products and attention; element-wise work is not counted)."""
    with FlopCounterMode(display=False) as counter:
        fn().backward()
    return int(counter.get_total_flops())


def sequence_flops(st, length: int, cache: dict[int, int]) -> int:
    """Forward + backward FLOPs of one text of ``length`` tokens alone through the sentence-transformers chain:
    the work a batch would need with no padding at all (the FLOP count does not depend on the token values)."""
    if length not in cache:
        features = {
            "input_ids": torch.full((1, length), 1000, dtype=torch.long),
            "attention_mask": torch.ones((1, length), dtype=torch.long),
            "token_type_ids": torch.zeros((1, length), dtype=torch.long),
        }
        cache[length] = count_flops(lambda: st(features)["sentence_embedding"].sum())
        st.zero_grad(set_to_none=True)
    return cache[length]


def matmul_peak(size: int = 4096, repeats: int = 3) -> dict:
    """fp32 FLOP/s of a ``size`` x ``size`` torch.matmul with this process's threads: the best of ``repeats``."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.matmul(a, b)  # warm-up
    best = min(_seconds(lambda: torch.matmul(a, b)) for _ in range(repeats))
    return {"size": size, "repeats": repeats, "threads": torch.get_num_threads(), "flops": 2 * size**3 / best}


def _seconds(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main(argv=None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    records = banking77(args.data, "train")
    config = recipe(args.batch_size, args.warmup + args.steps, args.seed)
    results = {"phases": profile_phases(records, config, args.steps, args.warmup)}
    for phase in PHASES:
        print(f"{phase:>15}: {results['phases']['median_s'][phase] * 1000:8.1f} ms", flush=True)
    results["optimizer"] = optimizer_variants()
    print(f"optimizer: {results['optimizer']['median_s']}")
    results["operators"] = top_operators(records, recipe(args.batch_size, 3, args.seed))
    for op in results["operators"]:
        print(f"{op['name']:>40}: {op['share']:6.1%}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return results


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
