"""The Flow under its supervisor (python -m finetuner_core.serve): kill -9 of the trainer alone restarts the Flow,
the run in progress resumes to FINISHED and a client following its logs never notices more than a pause; SIGTERM
to the supervisor stops every process of the Flow and frees the workspace."""

import contextlib
import csv
import os
import signal

import psutil
import pytest

import finetuner
from conftest import banking77_slice, user_token
from finetuner_core.storage.lock import WorkspaceLock, holder_pid
from flow_process import connect, start_supervised

CONFIG = {"batch_size": 16, "epochs": 4, "max_steps": 8, "checkpoint_every_steps": 2, "log_every": 1, "device": "cpu"}


def flow_processes(supervisor: psutil.Process) -> list[psutil.Process]:
    with contextlib.suppress(psutil.NoSuchProcess):
        return supervisor.children(recursive=True)
    return []


@pytest.mark.slow
def test_a_killed_trainer_is_restarted_and_its_run_resumes(data_dir, tmp_path, free_port):
    workspace = tmp_path / "workspace"
    token = user_token(workspace, "alice")
    path = tmp_path / "train.csv"
    with open(path, "w", newline="", encoding="utf-8") as file:
        csv.writer(file).writerows([("text", "label"), *banking77_slice(data_dir, "train", classes=4, per_class=8)])
    log = tmp_path / "serve.log"
    supervisor = start_supervised(workspace, free_port, log)
    try:
        connect(free_port, token, supervisor)
        trainer = holder_pid(workspace)
        processes = flow_processes(psutil.Process(supervisor.pid))
        assert trainer in [process.pid for process in processes], "the trainer is a process of the Flow"
        run = finetuner.fit(train_data=str(path), quiet=True, **CONFIG)
        lines = []
        for line in run.stream_logs(interval_s=0.2):
            lines.append(line)
            if line.startswith("step 3/") and psutil.pid_exists(trainer):
                os.kill(trainer, signal.SIGKILL)
        # the stream followed the run across the restart (a Flow start is tens of seconds here)
        assert run.status() == "FINISHED", run.logs()
        assert any(line.startswith("the trainer restarted") for line in lines), lines
        assert lines == run.logs().splitlines(), "every line once, in order, across the restart"
        assert holder_pid(workspace) not in (None, trainer) and "restarting the Flow" in log.read_text()
        first = {process.pid for process in processes}
        assert not any(psutil.pid_exists(pid) for pid in first), "every process of the failed Flow was stopped"

        running = flow_processes(psutil.Process(supervisor.pid))
        supervisor.send_signal(signal.SIGTERM)
        assert supervisor.wait(180) == 0, log.read_text()[-3000:]
        _, alive = psutil.wait_procs(running, timeout=30)
        assert not alive, f"processes of the Flow outlived it: {alive}"
        WorkspaceLock(workspace).release()  # the workspace is free for the next Flow
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(supervisor.pid, signal.SIGKILL)
        supervisor.wait(30)
