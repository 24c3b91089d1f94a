"""``python -m finetuner_core.serve [flow.yml]``: the Flow under a supervisor.

jina restarts nothing: an executor that dies (kill -9, out of memory) leaves a Flow that fails every request,
and a SIGTERM to ``jina flow`` alone leaves its gateway and executors running. The supervisor starts
``jina flow --uses FLOW`` in a process group of its own and watches the Flow's processes:

- a process of the Flow dies, or the Flow exits, without being asked to: the whole group is stopped and the
  Flow started again after a back-off (1 s, doubling up to 60 s; back to 1 s once a Flow has lived
  ``--stable-s``); the new trainer resumes the runs the dead one left. After ``--max-restarts`` restarts in a
  row, or at once with ``--no-restart`` (an outer supervisor such as systemd or Kubernetes restarts it), the
  supervisor exits with code 1.
- SIGTERM or SIGINT: sent on to the whole group (the trainer checkpoints its runs and leaves them QUEUED for the
  next one); what is still running after ``--grace-s`` is killed; exit code 0.

The supervisor also adopts the Flow's orphans (Linux: a child subreaper), so that none outlives it.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import yaml

LOG = logging.getLogger("finetuner_core.serve")
WORKSPACE_VARIABLE = "FINETUNER_WORKSPACE"  # as finetuner_core.workspace reads it (not imported: it loads torch)
PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
MAX_PAUSE_S = 60.0


class Supervisor:
    """Runs ``command`` (the Flow) in its own process group, again whenever a process of it dies."""

    def __init__(
        self,
        command: list[str],
        env: dict[str, str] | None = None,
        restart: bool = True,
        max_restarts: int = 5,
        stable_s: float = 300.0,
        grace_s: float = 150.0,
        poll_s: float = 0.5,
    ):
        self.command = command
        self.env = env
        self.restart = restart
        self.max_restarts = max_restarts
        self.stable_s = stable_s
        self.grace_s = grace_s
        self.poll_s = poll_s
        self._signals: list[int] = []
        self._flow: subprocess.Popen | None = None
        self._exit_code: int | None = None

    def run(self) -> int:
        """Supervise until asked to stop (0) or until the Flow cannot be kept up (1)."""
        for number in (signal.SIGTERM, signal.SIGINT):
            signal.signal(number, lambda number, frame: self._signals.append(number))
        _become_subreaper()
        restarts, pause = 0, 1.0
        while True:
            started = time.monotonic()
            self._start()
            failure = self._watch()
            if failure is not None:
                LOG.error("the Flow failed: %s", failure)
            self._stop()
            if failure is None:
                LOG.info("the Flow stopped")
                return 0
            if not self.restart:
                LOG.error("not restarting it (--no-restart): exiting with code 1")
                return 1
            if time.monotonic() - started >= self.stable_s:
                restarts, pause = 0, 1.0
            if restarts >= self.max_restarts:
                LOG.error("the Flow failed %d times in a row: giving up, exiting with code 1", restarts + 1)
                return 1
            restarts += 1
            LOG.warning("restarting the Flow in %.0f s (restart %d of %d in a row)", pause, restarts, self.max_restarts)
            if self._sleep(pause):
                return 0
            pause = min(pause * 2, MAX_PAUSE_S)

    def _start(self) -> None:
        self._exit_code = None
        self._flow = subprocess.Popen(self.command, env=self.env, start_new_session=True, preexec_fn=_die_with_parent)
        LOG.info("started the Flow (pid %d): %s", self._flow.pid, " ".join(self.command))

    def _watch(self) -> str | None:
        """Wait until a stop signal (None) or until a process of the Flow ends (what happened)."""
        assert self._flow is not None
        flow = psutil.Process(self._flow.pid)
        seen: dict[int, psutil.Process] = {}
        while not self._signals:
            if self._reap() is not None:
                return f"the Flow process {flow.pid} exited with code {self._exit_code}"
            with contextlib.suppress(psutil.Error):
                for child in flow.children():
                    seen.setdefault(child.pid, child)
            for pid, child in seen.items():
                if not _alive(child):
                    return f"its process {pid} (an executor or the gateway) died"
            time.sleep(self.poll_s)
        return None

    def _stop(self) -> None:
        """SIGTERM to the Flow's process group; SIGKILL to what is left after the grace period (or a second
        signal); return once every process of the group is gone."""
        assert self._flow is not None
        group = self._flow.pid
        LOG.info("stopping the Flow's processes (SIGTERM, then SIGKILL after %.0f s)", self.grace_s)
        _signal_group(group, signal.SIGTERM)
        stop_signals = len(self._signals)
        deadline = time.monotonic() + self.grace_s
        while _group_alive(group, self._reap):
            if time.monotonic() > deadline or len(self._signals) > max(stop_signals, 1):
                LOG.warning("killing what is left of the Flow (SIGKILL)")
                _signal_group(group, signal.SIGKILL)
                deadline = float("inf")
            time.sleep(0.1)

    def _reap(self) -> int | None:
        """Collect every ended child (the Flow, and adopted orphans); the Flow's exit code once it has ended."""
        assert self._flow is not None
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            if pid == self._flow.pid:
                self._exit_code = os.waitstatus_to_exitcode(status)
                self._flow.returncode = self._exit_code
        return self._exit_code

    def _sleep(self, seconds: float) -> bool:
        """Sleep; True if a stop signal came meanwhile."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not self._signals:
            time.sleep(min(0.1, seconds))
        return bool(self._signals)


def _alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _signal_group(group: int, number: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(group, number)


def _group_alive(group: int, reap) -> bool:
    reap()
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return any(_alive(process) for process in _members(group))  # zombies are ended: their parent reaps them


def _members(group: int) -> list[psutil.Process]:
    members = []
    for process in psutil.process_iter():
        with contextlib.suppress(psutil.Error):
            if os.getpgid(process.pid) == group:
                members.append(process)
    return members


def _become_subreaper() -> None:
    """Orphans of the Flow (an executor whose parent died) become children of this process, not of init."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def _die_with_parent() -> None:
    """In the Flow's process, before jina starts: killed if the supervisor is (its executors then exit too,
    see finetuner_core.parent)."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def flow_defaults(flow: Path) -> dict[str, str]:
    """The variables of ``<flow>.env`` next to a Flow file (``KEY=VALUE`` lines, ``#`` comments; ``flow.yml``:
    ``flow.env``), the defaults of what the Flow file reads from the environment; no file: none."""
    path = flow.with_suffix(".env")
    if not path.exists():
        return {}
    lines = [line.strip() for line in path.read_text("utf-8").splitlines()]
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def flow_file(flow: Path, port: int | None, folder: Path) -> Path:
    """``flow``, or a copy of it in ``folder`` that serves on ``port``."""
    if port is None:
        return flow
    config = yaml.safe_load(flow.read_text("utf-8"))
    if not isinstance(config, dict) or config.get("jtype") != "Flow":
        raise ValueError(f"{flow} is not a Flow file (jtype: Flow)")
    config["with"] = {**(config.get("with") or {}), "port": port}
    copy = folder / flow.name
    copy.write_text(yaml.safe_dump(config, sort_keys=False), "utf-8")
    return copy


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m finetuner_core.serve", description=__doc__.split("\n\n")[0].split(": ", 1)[1]
    )
    parser.add_argument("flow", nargs="?", default="flow.yml", help="the Flow file (default: flow.yml)")
    parser.add_argument("--port", type=int, help="serve on this port instead of the Flow file's")
    parser.add_argument("--workspace", help=f"the workspace folder (default: ${WORKSPACE_VARIABLE}, else ./workspace)")
    parser.add_argument("--no-restart", action="store_true", help="exit with code 1 when the Flow fails")
    parser.add_argument("--max-restarts", type=int, default=5, help="restarts in a row before giving up (5)")
    parser.add_argument("--stable-s", type=float, default=300.0, help="a Flow up this long resets the count (300)")
    parser.add_argument(
        "--grace-s", type=float, default=150.0, help="on stop, seconds before SIGKILL (150; runs checkpoint meanwhile)"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s serve: %(message)s", stream=sys.stderr)
    flow = Path(args.flow)
    if not flow.is_file():
        print(f"error: no Flow file {flow}", file=sys.stderr)
        return 2
    env = {**flow_defaults(flow), **os.environ}  # the environment first, then the Flow file's defaults
    if args.workspace:
        env[WORKSPACE_VARIABLE] = str(Path(args.workspace).resolve())
    with tempfile.TemporaryDirectory(prefix="finetuner-serve-") as folder:
        try:
            uses = flow_file(flow, args.port, Path(folder))
        except (ValueError, yaml.YAMLError) as error:
            print(f"error: {str(error).splitlines()[0]}", file=sys.stderr)
            return 2
        command = [sys.executable, "-m", "jina", "flow", "--uses", str(uses)]
        supervisor = Supervisor(
            command,
            env,
            restart=not args.no_restart,
            max_restarts=args.max_restarts,
            stable_s=args.stable_s,
            grace_s=args.grace_s,
        )
        return supervisor.run()


if __name__ == "__main__":
    sys.exit(main())
