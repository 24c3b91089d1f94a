import threading
import time

import numpy as np
import pytest
from sentence_transformers import SentenceTransformer

from conftest import banking77_slice
from finetuner_core.config import FitConfig
from finetuner_core.runs import RunStatus, RunStore
from finetuner_core.runs.artifact import read_manifest
from finetuner_core.runs.context import RunContext
from finetuner_core.runs.execute import execute_run
from finetuner_core.runs.queue import RunQueue
from finetuner_protocol.data import LabeledItem


@pytest.fixture(scope="module")
def data(data_dir):
    train = [LabeledItem(t, lab) for t, lab in banking77_slice(data_dir, "train", classes=4, per_class=8)]
    evaluation = [LabeledItem(t, lab) for t, lab in banking77_slice(data_dir, "test", classes=4, per_class=5)]
    return train, evaluation


def test_a_run_evaluates_trains_and_saves_its_artifact(tmp_path, data, minilm):
    store = RunStore(tmp_path)
    config = FitConfig(batch_size=16, max_steps=2, eval_ks=[1, 5], device="cpu", to_onnx=True)
    run_id = store.create(config, *data)
    execute_run(RunContext(store, run_id))
    assert store.status(run_id)["status"] == RunStatus.FINISHED
    metrics = store.metrics(run_id)
    assert set(metrics) == {"before", "after"}
    assert {"precision@1", "recall@5", "mrr@5", "map@5", "ndcg@5", "hit@5"} <= set(metrics["after"])
    assert metrics["before"]["queries"] == 20
    messages = [entry["message"] for entry in store.logs(run_id)]
    assert any(m.startswith("metrics before") for m in messages) and any("model saved" in m for m in messages)
    files = {entry["path"] for entry in read_manifest(store.artifact_dir(run_id))}
    assert {"modules.json", "model.safetensors", "config.json", "finetuner.json", "onnx/model.onnx"} <= files
    tuned = SentenceTransformer(str(store.artifact_dir(run_id)), device="cpu")
    texts = [record.content for record in data[1][:4]]
    assert not np.allclose(tuned.encode(texts, normalize_embeddings=True), minilm.encode(texts), atol=1e-4)


def test_a_metric_monitor_keeps_the_pretrained_model_when_training_makes_it_worse(tmp_path, data):
    store = RunStore(tmp_path)
    config = FitConfig(
        batch_size=16, epochs=2, max_steps=4, learning_rate=5e-3, monitor="precision@1", eval_ks=[1, 5], device="cpu"
    )
    run_id = store.create(config, *data)
    execute_run(RunContext(store, run_id))
    metrics = store.metrics(run_id)
    assert list(metrics) == ["before", "step 4", "after"], "the trained model is measured when training ends"
    assert metrics["step 4"]["precision@1"] < metrics["before"]["precision@1"], "a learning rate that harms"
    assert metrics["after"] == metrics["before"], "the run hands back the pretrained model"
    messages = [entry["message"] for entry in store.logs(run_id)]
    kept = [m for m in messages if m.startswith("keeping the best model")]
    assert kept and "before training (the pretrained model)" in kept[0] and "at step 4" in kept[0]


def test_a_failing_run_is_recorded_as_failed(tmp_path, data):
    store = RunStore(tmp_path)
    run_id = store.create(FitConfig(model=str(tmp_path / "missing-model")), *data)
    execute_run(RunContext(store, run_id))
    status = store.status(run_id)
    assert status["status"] == RunStatus.FAILED and "not available offline" in status["error"]
    assert store.logs(run_id)[-1]["message"].startswith("failed: ModelNotAvailableError")


def test_the_queue_runs_in_the_background_and_resumes_interrupted_runs_on_restart(tmp_path):
    store = RunStore(tmp_path)
    config, train = FitConfig(), [LabeledItem("a", "x"), LabeledItem("b", "x")]
    started, queued = store.create(config, train, []), store.create(config, train, [])
    store.set_status(started, RunStatus.STARTED)
    store.set_status(queued, RunStatus.QUEUED)
    executed = []
    queue = RunQueue(store, execute=lambda run: executed.append(run.run_id))
    fresh = store.create(config, train, [])
    queue.cancel(fresh)
    queue.submit(fresh)
    deadline = time.monotonic() + 10
    while store.status(fresh)["status"] != RunStatus.CANCELLED and time.monotonic() < deadline:
        time.sleep(0.05)
    queue.close(timeout=5)
    assert executed == [started, queued], "a run left STARTED by a dead trainer goes on first"
    assert "resuming from the last checkpoint" in store.logs(started)[-1]["message"]
    assert store.status(fresh)["status"] == RunStatus.CANCELLED


def test_closing_with_suspend_stops_the_run_in_progress_and_leaves_it_queued(tmp_path):
    store = RunStore(tmp_path)
    run_id = store.create(FitConfig(), [LabeledItem("a", "x"), LabeledItem("b", "x")], [])
    running = threading.Event()

    def execute(run):
        store.set_status(run.run_id, RunStatus.STARTED)
        running.set()
        while not run.should_stop():
            time.sleep(0.01)
        store.set_status(run.run_id, RunStatus.CANCELLED)

    queue = RunQueue(store, execute=execute)
    queue.submit(run_id)
    assert running.wait(10)
    queue.close(timeout=10, suspend=True)
    assert store.status(run_id)["status"] == RunStatus.QUEUED
    assert "resumes when it restarts" in store.logs(run_id)[-1]["message"]
