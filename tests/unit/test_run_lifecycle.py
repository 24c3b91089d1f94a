"""How runs end: a cancel is never lost (queued, started, across a restart of the trainer, several processes), and
a run that has ended keeps no training checkpoint unless asked to."""

import sys
import threading
import time
from pathlib import Path

import numpy as np

from finetuner_core.config import FitConfig
from finetuner_core.runs import RunStatus, RunStore
from finetuner_core.runs.context import RunContext
from finetuner_core.runs.distributed import launch, run_torchrun
from finetuner_core.runs.execute import CHECKPOINT_FOLDER, execute_run
from finetuner_core.runs.queue import RunQueue
from finetuner_core.training.checkpoint import checkpoint_file, has_checkpoint
from finetuner_protocol.data import LabeledItem

MLP = {"model": "mlp", "model_options": {"input_dim": 8, "hidden_dims": [16], "output_dim": 8}, "device": "cpu"}
TRAIN = [LabeledItem("a", "x"), LabeledItem("b", "y")]


def vectors(n: int = 64, classes: int = 8) -> list[LabeledItem]:
    rng = np.random.default_rng(0)
    centers = rng.standard_normal((classes, 8)).astype(np.float32)
    return [
        LabeledItem(centers[i % classes] + 0.1 * rng.standard_normal(8).astype(np.float32), f"c{i % classes}")
        for i in range(n)
    ]


def mlp_run(store: RunStore, **fields) -> str:
    config = FitConfig(**{**MLP, "batch_size": 16, "checkpoint_every_steps": 1, "log_every": 1, **fields})
    return store.create(config, vectors(), [])


def wait_for(condition, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def checkpoint(store: RunStore, run_id: str) -> Path:
    return store.path(run_id) / CHECKPOINT_FOLDER


# --- cancel ------------------------------------------------------------------------------------------------------


def test_a_run_cancelled_while_queued_stays_cancelled_after_a_restart(tmp_path):
    store = RunStore(tmp_path)
    release = threading.Event()

    def blocking(run):  # the one worker is busy with the first run
        release.wait(30)

    first = RunQueue(store, execute=blocking)
    busy, queued = store.create(FitConfig(), TRAIN, []), store.create(FitConfig(), TRAIN, [])
    first.submit(busy)
    first.submit(queued)
    wait_for(lambda: store.status(busy)["status"] == RunStatus.STARTED)
    first.cancel(queued)
    assert store.status(queued)["status"] == RunStatus.CANCELLED, "the cancel is stored at once"
    executed = []  # the trainer dies here (its worker never ends) and a new one starts on the workspace
    second = RunQueue(RunStore(tmp_path), execute=lambda run: executed.append(run.run_id))
    second.close(timeout=10)
    assert executed == [busy] and store.status(queued)["status"] == RunStatus.CANCELLED
    release.set()
    first.close(timeout=10)
    assert executed == [busy], "the first trainer's worker does not run the cancelled run either"


def test_a_cancel_asked_of_a_started_run_outlives_a_restart(tmp_path):
    store = RunStore(tmp_path)
    run_id = mlp_run(store)
    store.set_status(run_id, RunStatus.STARTED)
    checkpoint(store, run_id).mkdir()
    store.request_cancel(run_id)  # asked, and the trainer died before the run saw it
    executed = []
    RunQueue(RunStore(tmp_path), execute=lambda run: executed.append(run.run_id)).close(timeout=10)
    assert executed == [] and store.status(run_id)["status"] == RunStatus.CANCELLED
    assert not checkpoint(store, run_id).exists()


def test_a_suspended_run_keeps_its_checkpoint_and_a_cancelled_one_does_not(tmp_path):
    store = RunStore(tmp_path)
    run_id = mlp_run(store, max_steps=None, epochs=10_000)
    queue = RunQueue(store)
    queue.submit(run_id)
    wait_for(lambda: has_checkpoint(checkpoint(store, run_id)))
    queue.close(timeout=60, suspend=True)
    assert store.status(run_id)["status"] == RunStatus.QUEUED and has_checkpoint(checkpoint(store, run_id))
    resumed = RunQueue(store)  # the next trainer goes on from the checkpoint
    wait_for(lambda: any("resuming from the checkpoint of step" in e["message"] for e in store.logs(run_id)))
    resumed.cancel(run_id)
    wait_for(lambda: store.status(run_id)["status"] == RunStatus.CANCELLED)
    resumed.close(timeout=60)
    assert not checkpoint(store, run_id).exists()


# --- checkpoints -------------------------------------------------------------------------------------------------


def test_a_finished_run_keeps_its_training_checkpoint_only_when_asked(tmp_path):
    store = RunStore(tmp_path)
    dropped, kept = mlp_run(store, max_steps=2), mlp_run(store, max_steps=2, keep_checkpoint=True)
    for run_id in (dropped, kept):
        execute_run(RunContext(store, run_id))
        assert store.status(run_id)["status"] == RunStatus.FINISHED, store.status(run_id).get("error")
    assert not checkpoint(store, dropped).exists()
    assert has_checkpoint(checkpoint(store, kept))
    assert (store.artifact_dir(dropped) / "manifest.json").is_file()


def test_a_failed_run_keeps_no_checkpoint(tmp_path):
    store = RunStore(tmp_path)
    run_id = mlp_run(store, max_steps=2)
    checkpoint(store, run_id).mkdir()
    checkpoint_file(checkpoint(store, run_id)).write_bytes(b"not a checkpoint")  # resuming from it fails
    execute_run(RunContext(store, run_id))
    status = store.status(run_id)
    assert status["status"] == RunStatus.FAILED and "not a readable training checkpoint" in status["error"]
    assert not checkpoint(store, run_id).exists()


# --- several processes -------------------------------------------------------------------------------------------


def alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie waiting to be reaped does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def test_stopping_the_launcher_ends_every_process_it_started(tmp_path):
    pids = tmp_path / "pids"
    child = "import time; time.sleep(600)"
    parent = (
        "import subprocess, sys, time, pathlib; "
        f"c = subprocess.Popen([sys.executable, '-c', {child!r}]); "
        f"pathlib.Path({str(pids)!r}).write_text(f'{{c.pid}}'); time.sleep(600)"
    )
    started = time.monotonic()
    code = run_torchrun([sys.executable, "-c", parent], {}, tmp_path / "out.log", lambda: pids.exists())
    assert code != 0 and time.monotonic() - started < 60
    wait_for(lambda: not alive(int(pids.read_text())), timeout_s=10)


def processes_of(run_id: str) -> list[int]:
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if run_id.encode() in cmdline.read_bytes() and alive(int(cmdline.parent.name)):
                found.append(int(cmdline.parent.name))
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return found


def test_a_cancel_ends_a_run_whose_processes_wait_for_a_node_that_never_comes(tmp_path, free_port):
    store = RunStore(tmp_path)
    rendezvous = {"num_processes": 1, "nnodes": 2, "rdzv_backend": "c10d", "rdzv_endpoint": f"127.0.0.1:{free_port}"}
    run_id = mlp_run(store, max_steps=2, distributed=rendezvous)
    messages, grace_s = [], 1.0
    started = time.monotonic()
    run = RunContext(store, run_id, should_stop=lambda: processes_of(run_id) != [], log_to=messages.append)
    launch(run, cancel_grace_s=grace_s)
    assert time.monotonic() - started < 120, "not the rendezvous' 600 s"
    assert store.status(run_id)["status"] == RunStatus.CANCELLED
    assert messages[-1] == f"cancelled: the training processes were ended ({grace_s:g} s after the cancel)"
    assert (store.path(run_id) / "cancel").exists() and processes_of(run_id) == []
