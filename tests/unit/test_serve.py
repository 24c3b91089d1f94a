"""The Flow's supervisor (finetuner_core.serve), on a stand-in Flow: a process that forks two workers and writes
their pids, as `jina flow` forks its gateway and executors. The real Flow under the supervisor:
tests/flow/test_supervisor.py."""

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import yaml

from finetuner_core.serve import flow_file

STAND_IN = """
import os, sys, time
workers = []
ready, watching = os.pipe()
for _ in range(2):
    pid = os.fork()
    if pid == 0:
        from finetuner_core.parent import stop_with_parent
        stop_with_parent(0.1)
        os.write(watching, b"1")
        while True:
            time.sleep(1)
    workers.append(pid)
received = b""
while len(received) < 2:  # both workers watch their parent
    received += os.read(ready, 2 - len(received))
with open(sys.argv[1], "a") as file:
    file.write(" ".join(map(str, [os.getpid(), *workers])) + "\\n")
while True:
    time.sleep(1)
"""
SUPERVISE = """
import sys
from finetuner_core.serve import Supervisor
restart, max_restarts, stand_in, pids = sys.argv[1] == "restart", int(sys.argv[2]), sys.argv[3], sys.argv[4]
command = [sys.executable, stand_in, pids]
supervisor = Supervisor(command, restart=restart, max_restarts=max_restarts, grace_s=10, poll_s=0.1)
sys.exit(supervisor.run())
"""


def supervise(
    tmp_path: Path, restart: bool = True, max_restarts: int = 3, flow: str = STAND_IN
) -> tuple[subprocess.Popen, Path]:
    stand_in, pids = tmp_path / "flow.py", tmp_path / "pids"
    stand_in.write_text(flow)
    arguments = ["restart" if restart else "no-restart", str(max_restarts), str(stand_in), str(pids)]
    process = subprocess.Popen(
        [sys.executable, "-c", SUPERVISE, *arguments], stderr=open(tmp_path / "log", "wb"), start_new_session=True
    )
    return process, pids


def started(pids: Path, count: int, deadline_s: float = 60) -> list[list[int]]:
    """The pids of the first ``count`` Flows, once the ``count``-th has started."""
    deadline = time.monotonic() + deadline_s
    while len(lines := (pids.read_text().splitlines() if pids.exists() else [])) < count:
        assert time.monotonic() < deadline, f"{count} Flow starts expected, saw {len(lines)}"
        time.sleep(0.05)
    return [[int(pid) for pid in line.split()] for line in lines]


def gone(pids: list[int], deadline_s: float = 30) -> bool:
    deadline = time.monotonic() + deadline_s
    while any(psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE for pid in pids):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def kill_all(process: subprocess.Popen, pids: Path) -> None:
    """Whatever a failed test left running."""
    for pid in [process.pid, *(int(pid) for pid in (pids.read_text() if pids.exists() else "").split())]:
        if pid > 1:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    process.wait(30)


def test_a_dead_worker_restarts_the_whole_flow_and_sigterm_stops_every_process(tmp_path):
    process, pids = supervise(tmp_path)
    try:
        (first,) = started(pids, 1)
        os.kill(first[2], signal.SIGKILL)
        first_again, second = started(pids, 2)
        assert gone(first), "every process of the failed Flow is stopped before the next starts"
        assert set(second).isdisjoint(first)
        process.send_signal(signal.SIGTERM)
        assert process.wait(60) == 0
        assert gone(second)
        log = (tmp_path / "log").read_text()
        assert f"its process {first[2]} (an executor or the gateway) died" in log and "restarting the Flow" in log
    finally:
        kill_all(process, pids)


def test_without_restarts_a_dead_worker_stops_the_flow_and_exits_1(tmp_path):
    process, pids = supervise(tmp_path, restart=False)
    try:
        (first,) = started(pids, 1)
        os.kill(first[1], signal.SIGKILL)
        assert process.wait(60) == 1
        assert gone(first)
        assert "not restarting it (--no-restart)" in (tmp_path / "log").read_text()
    finally:
        kill_all(process, pids)


def test_a_killed_supervisor_takes_the_flow_with_it(tmp_path):
    process, pids = supervise(tmp_path)
    try:
        (first,) = started(pids, 1)
        process.kill()
        process.wait(30)
        assert gone(first), "the Flow's process and its workers outlived their supervisor"
    finally:
        kill_all(process, pids)


def test_a_flow_that_keeps_failing_is_given_up_after_the_restarts_in_a_row(tmp_path):
    process, pids = supervise(tmp_path, max_restarts=1, flow="import sys\nsys.exit(3)\n")
    try:
        assert process.wait(60) == 1
        log = (tmp_path / "log").read_text()
        assert log.count("exited with code 3") == 2 and "giving up" in log
    finally:
        kill_all(process, pids)


def test_a_port_is_set_in_a_copy_of_the_flow_file(tmp_path):
    root = Path(__file__).resolve().parents[2]
    copy = flow_file(root / "flow.yml", 12345, tmp_path)
    original, changed = yaml.safe_load((root / "flow.yml").read_text()), yaml.safe_load(copy.read_text())
    assert changed["with"]["port"] == 12345
    assert {**changed, "with": original["with"]} == original
    assert flow_file(root / "flow.yml", None, tmp_path) == root / "flow.yml"
    (tmp_path / "bad.yml").write_text("executors: []\n")
    with pytest.raises(ValueError, match="not a Flow file"):
        flow_file(tmp_path / "bad.yml", 1, tmp_path / "out")
