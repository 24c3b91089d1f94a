"""Flow overhead: the same small fit through the real Flow (flow.yml, client login, finetuner.fit, run.wait)
against the project's core called directly (build_model, evaluate, train, evaluate), alternated A B A B.

    python bench/flow_overhead.py            # the figures in docs/BENCHMARKS.md
    python bench/flow_overhead.py --quick    # fewer steps

Both do the same work on the same records and FitConfig: build all-MiniLM-L6-v2, evaluate, train, evaluate
again. The Flow also checks and uploads the data, queues the run, stores logs and metrics and saves the
artifact (model, model card, manifest). Each Flow run is split by its own log lines' times: submission
(client checks + upload + /fit), queue wait, model build, evaluation before, training (as the run logs it),
evaluation after, saving, and the client's wait after the last line. Writes ``bench/results/flow_overhead.json``,
``bench/results/flow_overhead.png`` and the Flow-overhead section of ``docs/BENCHMARKS.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("JINA_OPTOUT_TELEMETRY", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

sys.path.insert(0, str(Path(__file__).resolve().parent))
from measure import ratios, spread  # noqa: E402
from quality_data import banking77_slice  # noqa: E402
from quality_report import DOC, RESULTS, describe_machine, machine_line, put_section  # noqa: E402
from quality_trainers import evaluate  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
KS = (1, 10, 20)
BEGIN, END = "<!-- flow-overhead:begin -->", "<!-- flow-overhead:end -->"
PHASES = ("submit", "queue", "build", "eval_before", "train", "eval_after", "save", "client_wait", "other")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"), help="the shared data folder")
    parser.add_argument("--quick", action="store_true", help="2 steps instead of --steps")
    parser.add_argument("--steps", type=int, default=90)
    parser.add_argument("--rounds", type=int, default=3, help="runs of each variant, alternated (>= 3)")
    parser.add_argument("--train-per-class", type=int, default=40, help="Banking77 train rows of each class")
    parser.add_argument("--eval-per-class", type=int, default=3, help="Banking77 test rows of each class")
    parser.add_argument("--results", default=str(RESULTS))
    parser.add_argument("--doc", default=str(DOC), help="'' to leave the docs alone")
    return parser.parse_args(argv)


def settings(args) -> dict:
    steps = 2 if args.quick else args.steps
    return {"batch_size": 32, "max_steps": steps, "seed": 42, "device": "cpu", "eval_ks": list(KS), "log_every": 1}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def core_fit(train_records: list, eval_records: list, options: dict) -> dict:
    """What a run does, called directly: build, evaluate, train, evaluate (no storing, no artifact)."""
    from finetuner_core.config import FitConfig
    from finetuner_core.models import build_model
    from finetuner_core.training.loop import train
    from finetuner_core.training.seeding import seed_everything
    from finetuner_protocol.data.fit_settings import settle_fit

    marks = [time.perf_counter()]
    config = FitConfig(**options)
    settle_fit(config, {"train": train_records, "eval": eval_records})
    seed_everything(config.seed)
    model = build_model(config.model, config.model_options, config.device)
    marks.append(time.perf_counter())
    before = evaluate(model, eval_records, KS)
    marks.append(time.perf_counter())
    state = train(model, train_records, config)
    marks.append(time.perf_counter())
    after = evaluate(model, eval_records, KS)
    marks.append(time.perf_counter())
    parts = dict(zip(("build", "eval_before", "train", "eval_after"), _diffs(marks), strict=True))
    return {"wall": marks[-1] - marks[0], "parts": parts, "steps": state.step, "before": before, "after": after}


def flow_fit(workspace: Path, train_records: list, eval_records: list, options: dict) -> dict:
    """The same fit through the running Flow; the split of its time from the run's own log lines."""
    import finetuner
    from finetuner_core.workspace import Workspace

    train = [(r.content, r.label) for r in train_records]
    evaluation = [(r.content, r.label) for r in eval_records]
    start_clock, start = time.time(), time.perf_counter()
    run = finetuner.fit(train_data=train, eval_data=evaluation, quiet=True, **options)
    submitted = time.time()
    status = run.wait()  # the default polling, once a second
    end, wall = time.time(), time.perf_counter() - start
    if status != "FINISHED":
        raise RuntimeError(f"run {run.id} ended {status}: {run.info().get('error')}")
    logs = Workspace(workspace).runs.logs(run.id)
    parts = split(logs, start_clock, submitted, end)
    metrics = run.metrics()
    return {"wall": wall, "parts": parts, "run_id": run.id, "before": metrics["before"], "after": metrics["after"]}


def _first(logs: list[dict], prefix: str) -> dict:
    return next(entry for entry in logs if entry["message"].startswith(prefix))


def split(logs: list[dict], start: float, submitted: float, end: float) -> dict[str, float]:
    """Seconds of each phase of one Flow run from the client's clock and the run's log times."""
    building = _first(logs, "building model")["time"]
    eval_before = _first(logs, "evaluating (before)")["time"]
    metrics_before = _first(logs, "metrics before")["time"]
    training_done = _first(logs, "training done")
    trained_s = float(training_done["message"].split(" in ")[1].rstrip("s"))
    eval_after = _first(logs, "evaluating (after)")["time"]
    metrics_after = _first(logs, "metrics after")["time"]
    saved = _first(logs, "model saved")["time"]
    parts = {
        "submit": submitted - start,
        "queue": building - submitted,
        "build": eval_before - building,
        "eval_before": metrics_before - eval_before,
        "train": trained_s,
        "eval_after": metrics_after - eval_after,
        "save": saved - metrics_after,
        "client_wait": end - logs[-1]["time"],
    }
    # what lies between the phases: preparing the training (task, optimizer) and the logging around it
    parts["other"] = (end - start) - sum(parts.values())
    return parts


def _diffs(marks: list[float]) -> list[float]:
    return [b - a for a, b in zip(marks, marks[1:], strict=False)]


def alternate_fits(args, workspace: Path, train_records, eval_records) -> dict:
    options = settings(args)
    seconds: dict[str, list[dict]] = {"flow": [], "core": []}
    for round_ in range(args.rounds):
        seconds["flow"].append(flow_fit(workspace, train_records, eval_records, options))
        seconds["core"].append(core_fit(train_records, eval_records, options))
        print(
            f"round {round_ + 1}: flow {seconds['flow'][-1]['wall']:.1f}s "
            f"{ {k: round(v, 2) for k, v in seconds['flow'][-1]['parts'].items()} }, "
            f"core {seconds['core'][-1]['wall']:.1f}s",
            flush=True,
        )
    return seconds


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.rounds < 3:
        raise SystemExit("--rounds must be at least 3")
    from jina import Flow

    import finetuner
    from finetuner_core.workspace import Workspace

    train_records, eval_records, described = banking77_slice(Path(args.data), args.train_per_class, args.eval_per_class)
    results: dict = {
        "machine": describe_machine(),
        "command": " ".join(["python", "bench/flow_overhead.py", *(sys.argv[1:] if __name__ == "__main__" else [])]),
        "settings": settings(args),
        "data": described,
        "rounds": args.rounds,
    }
    with tempfile.TemporaryDirectory() as folder:
        workspace = Path(folder) / "workspace"
        os.environ["FINETUNER_WORKSPACE"] = str(workspace)
        token = Workspace(workspace).users.create("bench")
        port = free_port()
        started = time.perf_counter()
        with Flow.load_config(str(ROOT / "flow.yml"), uses_with={"port": port}):
            results["flow_start_s"] = time.perf_counter() - started
            finetuner.login(host=f"grpc://127.0.0.1:{port}", token=token)
            runs = alternate_fits(args, workspace, train_records, eval_records)
    results["runs"] = runs
    results["wall"] = {name: [r["wall"] for r in entries] for name, entries in runs.items()}
    results["ratio_flow_vs_core"] = spread(ratios(results["wall"]["flow"], results["wall"]["core"]))
    results["spread"] = {name: spread(walls) for name, walls in results["wall"].items()}
    results["machine"]["load_average_end"] = describe_machine()["load_average"]
    _write(results, args)
    return results


def _write(results: dict, args) -> None:
    folder = Path(args.results)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "flow_overhead.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    plot(results, folder / "flow_overhead.png")
    if args.doc:
        put_section(Path(args.doc), BEGIN, END, render(results))
    print(f"written: {folder / 'flow_overhead.json'}, flow_overhead.png" + (f", {args.doc}" if args.doc else ""))


def _median_parts(entries: list[dict]) -> dict[str, float]:
    import statistics

    names = entries[0]["parts"]
    return {name: statistics.median(e["parts"][name] for e in entries) for name in names}


def render(r: dict) -> str:
    flow, core, ratio = r["spread"]["flow"], r["spread"]["core"], r["ratio_flow_vs_core"]
    flow_parts, core_parts = _median_parts(r["runs"]["flow"]), _median_parts(r["runs"]["core"])
    s = r["settings"]
    lines = [
        "## Flow overhead: the same fit through the Flow and through the core",
        "",
        f"`{r['command']}` on {machine_line(r['machine'])} at the start, "
        f"{r['machine'].get('load_average_end')} at the end. Raw figures in `bench/results/flow_overhead.json`.",
        f"A = `finetuner.fit(...)` + `run.wait()` on the running default Flow (flow.yml on 127.0.0.1, a user "
        f"token from the workspace); B = the core called directly (`build_model`, `evaluate_labeled`, `train`, "
        f"`evaluate_labeled`) on the same records and FitConfig: all-MiniLM-L6-v2, {r['data']['train_items']} "
        f"Banking77 training rows, {r['data']['eval_items']} evaluation rows, batch {s['batch_size']}, "
        f"{s['max_steps']} steps. Run A B A B ... ({r['rounds']} rounds); the Flow started once, in "
        f"{r['flow_start_s']:.1f} s (not counted).",
        "",
        "| | min | median | max |",
        "| --- | --- | --- | --- |",
        f"| A: through the Flow, wall s | {flow['min']:.1f} | {flow['median']:.1f} | {flow['max']:.1f} |",
        f"| B: core directly, wall s | {core['min']:.1f} | {core['median']:.1f} | {core['max']:.1f} |",
        f"| A / B | {ratio['min']:.2f} | {ratio['median']:.2f} | {ratio['max']:.2f} |",
        "",
        "Where the time goes (median over the rounds, seconds; the Flow's parts from its run's log times):",
        "",
        "| phase | Flow | core |",
        "| --- | --- | --- |",
    ]
    names = {
        "submit": "submission (client checks, upload, /fit)",
        "queue": "queue wait (until the run starts)",
        "build": "model build",
        "eval_before": "evaluation before",
        "train": "training (as logged by the run)",
        "eval_after": "evaluation after",
        "save": "saving the artifact (model, card, manifest)",
        "client_wait": "client's wait after the last log line (polling)",
        "other": "the rest (training set-up, storing logs and metrics)",
    }
    for phase in PHASES:
        core_cell = f"{core_parts[phase]:.2f}" if phase in core_parts else "-"
        lines.append(f"| {names[phase]} | {flow_parts[phase]:.2f} | {core_cell} |")
    lines += [
        "",
        "![flow vs core](../bench/results/flow_overhead.png)",
        "",
        "What these figures do not show:",
        "",
        "- Smaller or larger fits: the Flow's fixed costs (submission, saving the artifact, the client's polling, "
        "the training checkpoint written when training ends for crash safety, and the rest above) are about 2 s, "
        "so they weigh more in a fit of a few seconds (`--steps 10 --train-per-class 4`, 308 rows: "
        "A / B = 2.03 median, `bench/results/flow_overhead_10_steps.json`) and less in a fit of minutes or hours, "
        "where the ratio tends to 1.",
        "- Repeated uploads: the client stores a data set once; after the first round the same data is found "
        "stored, so later rounds' submission is mostly the check and the /fit request.",
        "- A quiet machine: the 2 cores are shared with other work (load average above; a load over 2 means "
        "waiting for a core, and the core runs of the same settings then vary by 2x or more); the Flow's "
        "executors run in their own processes and compete with the client for the same cores. Alternating A and "
        "B gives both the same conditions on average, not in every round.",
        "- Network: client and Flow are on the same machine (gRPC on 127.0.0.1).",
        "",
    ]
    return "\n".join(lines)


def plot(r: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    rounds = range(1, r["rounds"] + 1)
    left.bar([x - 0.2 for x in rounds], r["wall"]["flow"], 0.4, label="through the Flow")
    left.bar([x + 0.2 for x in rounds], r["wall"]["core"], 0.4, label="core directly")
    left.set_xticks(list(rounds), [f"round {x}" for x in rounds])
    left.set_ylabel("wall seconds")
    left.legend(fontsize=8)
    left.set_title("the same fit, alternated")
    bottom = 0.0
    for name, seconds in _median_parts(r["runs"]["flow"]).items():
        right.bar(["Flow"], [max(seconds, 0.0)], bottom=bottom, label=name)
        bottom += max(seconds, 0.0)
    bottom = 0.0
    for name, seconds in _median_parts(r["runs"]["core"]).items():
        right.bar(["core"], [seconds], bottom=bottom, color=f"C{PHASES.index(name)}")
        bottom += seconds
    right.set_title("median split (s)")
    right.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    main()
