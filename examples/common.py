"""What every example does around its fit: start the default Flow, follow a run, print its metrics."""

from __future__ import annotations

import contextlib
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("JINA_OPTOUT_TELEMETRY", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

ROOT = Path(__file__).resolve().parent.parent


@contextlib.contextmanager
def default_flow(port: int, workspace: Path):
    """flow.yml on 127.0.0.1:``port``, users, datasets and runs kept under ``workspace``; the client is logged
    in with a token of the workspace's user ``example`` (issued here, as `finetuner admin create-user` does)."""
    from jina import Flow

    import finetuner
    from finetuner_core.serve import flow_defaults
    from finetuner_core.workspace import Workspace

    os.environ["FINETUNER_WORKSPACE"] = str(workspace.resolve())
    for name, value in flow_defaults(ROOT / "flow.yml").items():  # the address flow.yml reads (flow.env)
        os.environ.setdefault(name, value)
    users = Workspace(workspace.resolve()).users
    token = users.rotate("example") if any(u.name == "example" for u in users.list()) else users.create("example")
    with Flow.load_config(str(ROOT / "flow.yml"), uses_with={"port": port}):
        finetuner.login(host=f"grpc://127.0.0.1:{port}", token=token)
        yield
    print("Flow stopped.")


def follow(run, started: float) -> bool:
    """Print the run's logs until it ends; True when it FINISHED."""
    print(f"run {run.id} accepted in {time.perf_counter() - started:.1f}s; training in the background")
    for line in run.stream_logs():
        print(f"  [{time.perf_counter() - started:6.1f}s] {line}", flush=True)
    status = run.status()
    if status != "FINISHED":
        print(f"run ended {status}: {run.info().get('error')}", file=sys.stderr)
    return status == "FINISHED"


def metric_table(metrics: dict, names: tuple[str, ...] = ()) -> str:
    """Before, after and change of each metric at a cut-off k (``precision@1`` ...), or of ``names``."""
    before, after = metrics.get("before", {}), metrics.get("after", {})
    names = list(names) or [name for name in after if "@" in name]
    lines = [f"{'metric':<14}{'before':>9}{'after':>9}{'change':>9}"]
    for name in names:
        lines.append(f"{name:<14}{before[name]:>9.4f}{after[name]:>9.4f}{after[name] - before[name]:>+9.4f}")
    return "\n".join(lines)


def cifar10_split(data_dir: Path, first: int, count: int) -> list[tuple[Path, str]]:
    """``(path, class)`` for files ``first`` .. ``first + count - 1`` of every CIFAR-10 class."""
    folders = sorted((data_dir / "cifar10" / "test").iterdir())
    return [(f / f"{i:04d}.jpg", f.name) for f in folders for i in range(first, first + count)]
