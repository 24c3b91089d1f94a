"""The default Flow in a process of its own, started as `jina flow --uses flow.yml` runs it for users.

Tests start their Flows this way rather than inside the pytest process: the pytest process talks gRPC (asyncio)
to every Flow, and a process that has done so can crash when it later forks executors (grpc/grpc#19793).
"""

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import finetuner
from finetuner_core.serve import flow_defaults

ROOT = Path(__file__).resolve().parent.parent


def start_flow(
    workspace: Path, port: int, log: Path | None = None, environment: dict[str, str | None] | None = None
) -> subprocess.Popen:
    """The Flow of ``flow.yml`` on ``port`` in its own process group (executors included), its output in ``log``;
    ``environment``: variables set (a value) or unset (None) for the Flow's processes."""
    code = (
        "from jina import Flow\n"
        f"with Flow.load_config({str(ROOT / 'flow.yml')!r}, uses_with={{'port': {port}}}) as flow:\n"
        "    flow.block()\n"
    )
    env = {**flow_defaults(ROOT / "flow.yml"), **os.environ, "FINETUNER_WORKSPACE": str(workspace)}  # flow.env
    env.pop("JINA_MP_START_METHOD", None)  # a fresh process forks its executors before it talks gRPC: safe
    for name, value in (environment or {}).items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    output = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115 (the child holds it)
    try:
        return subprocess.Popen(
            [sys.executable, "-c", code], env=env, cwd=ROOT, start_new_session=True, stdout=output, stderr=output
        )
    finally:
        if log:
            output.close()


def start_supervised(workspace: Path, port: int, log: Path, *options: str) -> subprocess.Popen:
    """The Flow of ``flow.yml`` under its supervisor (``python -m finetuner_core.serve``), as a service runs it,
    in a process group of its own; the supervisor's and the Flow's output in ``log``."""
    env = {**os.environ, "FINETUNER_WORKSPACE": str(workspace)}
    env.pop("JINA_MP_START_METHOD", None)
    command = [sys.executable, "-m", "finetuner_core.serve", "flow.yml", "--port", str(port), *options]
    with open(log, "ab") as output:
        return subprocess.Popen(command, env=env, cwd=ROOT, start_new_session=True, stdout=output, stderr=output)


def connect(port: int, token: str, flow: subprocess.Popen | None = None, timeout_s: float = 300) -> None:
    """Log the client in as soon as the Flow answers; fails at once if ``flow`` exits first."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            finetuner.login(host=f"grpc://127.0.0.1:{port}", token=token, timeout_s=2)
            return
        except finetuner.ConnectionFailedError:
            if flow is not None and flow.poll() is not None:
                raise RuntimeError(f"the Flow exited with code {flow.returncode} before it answered") from None
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


def stop_flow(flow: subprocess.Popen, timeout_s: float = 60) -> None:
    """SIGINT to the Flow's process group (jina closes its executors), SIGKILL if it is still there after that."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(flow.pid, signal.SIGINT)
    try:
        flow.wait(timeout_s)
    except subprocess.TimeoutExpired:
        pass
    with contextlib.suppress(ProcessLookupError):
        os.killpg(flow.pid, signal.SIGKILL)
    flow.wait(30)
