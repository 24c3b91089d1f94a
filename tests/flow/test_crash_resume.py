"""kill -9 of the whole Flow in the middle of a run: the restarted Flow resumes the run from its last training
checkpoint, and the model it finishes with is the one an uninterrupted run gives."""

import contextlib
import csv
import os
import signal
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

import finetuner
from conftest import banking77_slice, user_token
from flow_process import connect, start_flow

CONFIG = {"batch_size": 16, "epochs": 4, "max_steps": 12, "checkpoint_every_steps": 3, "log_every": 1, "device": "cpu"}


def weights(run, directory: Path) -> dict:
    return load_file(str(run.save_artifact(directory) / "model.safetensors"))


@pytest.mark.slow
def test_a_killed_flow_resumes_its_run_from_the_last_checkpoint(data_dir, tmp_path, free_port):
    workspace = tmp_path / "workspace"
    token = user_token(workspace, "alice")
    path = tmp_path / "train.csv"
    with open(path, "w", newline="", encoding="utf-8") as file:
        csv.writer(file).writerows([("text", "label"), *banking77_slice(data_dir, "train", classes=4, per_class=12)])
    flow = start_flow(workspace, free_port)
    try:
        connect(free_port, token)
        run = finetuner.fit(train_data=str(path), quiet=True, **CONFIG)
        for line in run.stream_logs(interval_s=0.2):
            if line.startswith("step 7/"):
                break
        os.killpg(flow.pid, signal.SIGKILL)
        flow.wait(30)
        assert (workspace / "runs" / run.id / "checkpoint").is_dir()
        flow = start_flow(workspace, free_port)
        connect(free_port, token)
        assert run.wait(interval_s=0.5, timeout_s=600) == "FINISHED", run.logs()
        logs = run.logs().splitlines()
        restarts = [i for i, line in enumerate(logs) if line.startswith("the trainer restarted")]
        assert restarts, logs
        restart = restarts[0]
        resumed_at = next(line for line in logs[restart:] if line.startswith("step "))
        assert int(resumed_at.split()[1].split("/")[0]) >= 5, "at most one checkpoint interval of work is lost"

        uninterrupted = finetuner.fit(train_data=str(path), quiet=True, **CONFIG)
        assert uninterrupted.wait(interval_s=0.5, timeout_s=600) == "FINISHED", uninterrupted.logs()
        resumed, reference = weights(run, tmp_path / "a"), weights(uninterrupted, tmp_path / "b")
        assert resumed.keys() == reference.keys()
        for name in reference:
            np.testing.assert_allclose(resumed[name], reference[name], atol=1e-5, err_msg=name)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(flow.pid, signal.SIGKILL)
        flow.wait(30)
