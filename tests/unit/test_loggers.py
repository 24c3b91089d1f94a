"""Each experiment logger on a few real training steps of the MLP, its files read back with the tool's own reader
(TensorBoard's EventAccumulator, MLflow's client on the file store, the records of W&B's offline run file)."""

import gc
import json
import math
import os
import struct
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from finetuner_core.callbacks.base import Callback
from finetuner_core.callbacks.evaluation import EvaluationCallback
from finetuner_core.callbacks.loggers import LOGGERS, LoggerNotAvailableError, build_logger, hyperparameters
from finetuner_core.config import FitConfig
from finetuner_core.evaluation.evaluate import evaluate_labeled
from finetuner_core.models import build_model
from finetuner_core.runs import RunStatus, RunStore
from finetuner_core.runs.context import RunContext
from finetuner_core.runs.execute import execute_run
from finetuner_core.training.loop import train
from finetuner_protocol.data import LabeledItem

MLP_OPTIONS = {"input_dim": 8, "hidden_dims": [16]}


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")


@pytest.fixture(scope="module", autouse=True)
def _no_lingering_wandb_service():
    yield
    if "wandb" in sys.modules:
        sys.modules["wandb"].teardown()
    assert not [pid for pid, name in _children() if "wandb" in name], "the W&B service outlived the tests"


def _children() -> list[tuple[int, str]]:
    """(pid, command name) of this process's live children, from /proc/<pid>/stat: ``pid (name) state ppid ...``."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # the process ended meanwhile
            continue
        name, rest = text[text.index("(") + 1 : text.rindex(")")], text[text.rindex(")") + 1 :].split()
        if int(rest[1]) == os.getpid() and rest[0] != "Z":
            found.append((int(stat.parent.name), name))
    return found


def vectors(n: int, seed: int) -> list[LabeledItem]:
    rng = np.random.default_rng(seed)
    return [LabeledItem(rng.normal(size=8).astype(np.float32), str(i % 4)) for i in range(n)]


def fit_config(**fields) -> FitConfig:
    base = dict(model="mlp", model_options=MLP_OPTIONS, batch_size=8, num_items_per_class=2, device="cpu")
    return FitConfig(**{**base, "max_steps": 5, "learning_rate": 1e-2, **fields})


class Recorder(Callback):
    """What the loop reported: training values per step and metrics per evaluation step."""

    def __init__(self, fail_at: int | None = None, raise_at: int | None = None):
        self.fail_at, self.raise_at = fail_at, raise_at
        self.steps: dict[int, dict[str, float]] = {}
        self.evaluations: dict[int, dict[str, float]] = {}

    def on_train_begin(self, state):
        self.evaluations[state.metrics_step] = dict(state.metrics)

    def on_step_end(self, state):
        values = {"train/loss": state.loss, "train/learning_rate": state.learning_rate}
        self.steps[state.step] = {**values, "train/grad_norm": state.grad_norm}
        if state.metrics_step == state.step:
            self.evaluations[state.step] = dict(state.metrics)
        if state.step == self.fail_at:
            state.request_stop("a failure", failed=True)
        if state.step == self.raise_at:
            raise RuntimeError("training broke")


def fit(name: str, folder: Path, every: int = 2, **recorder) -> tuple[Recorder, dict, object]:
    """Train the MLP for 5 steps with an evaluation every 2 and ``name``'s logger; the logger is returned unclosed
    when training raised."""
    config = fit_config(run_name="logged")
    model, evaluation = build_model("mlp", MLP_OPTIONS, "cpu"), vectors(16, seed=1)

    def evaluate() -> dict[str, float]:
        return evaluate_labeled(model, evaluation, (1, 5))

    record = Recorder(**recorder)
    initial = evaluate()
    params = config.model_dump(mode="json")
    logger = build_logger(name, folder, params, every=every, run_name="logged")
    callbacks = [EvaluationCallback(evaluate, every_steps=2, initial=initial), record, logger]
    train(model, vectors(48, seed=0), config, callbacks)
    return record, params, logger


# --- readers -----------------------------------------------------------------------------------------------------


@dataclass
class Logged:
    """What a logger wrote, as its tool reads it back."""

    name: str | None  # the run's name (TensorBoard has none: the folder is the run)
    hparams: dict
    scalars: dict[str, dict[int, float]]  # tag -> step -> value
    status: str  # finished, failed, or open (no end written)


def read_tensorboard(folder: Path) -> Logged:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import api_pb2, plugin_data_pb2

    events = EventAccumulator(str(folder), size_guidance={"scalars": 0, "tensors": 0})
    events.Reload()
    scalars = {tag: {e.step: e.value for e in events.Scalars(tag)} for tag in events.Tags()["scalars"]}
    content = events.PluginTagToContent("hparams")
    start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
    hparams = {}
    for key, value in start.session_start_info.hparams.items():
        hparams[key] = getattr(value, value.WhichOneof("kind"))
    end = plugin_data_pb2.HParamsPluginData.FromString(content.get("_hparams_/session_end_info", b""))
    status = {api_pb2.STATUS_SUCCESS: "finished", api_pb2.STATUS_FAILURE: "failed"}.get(
        end.session_end_info.status, "open"
    )
    return Logged(None, hparams, scalars, status)


def read_mlflow(folder: Path) -> Logged:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=folder.resolve().as_uri())
    [run] = client.search_runs([client.get_experiment_by_name("finetuner").experiment_id])
    scalars = {
        key: {m.step: m.value for m in client.get_metric_history(run.info.run_id, key)} for key in run.data.metrics
    }
    status = {"FINISHED": "finished", "FAILED": "failed", "RUNNING": "open"}[run.info.status]
    return Logged(run.info.run_name, run.data.params, scalars, status)


def read_wandb(folder: Path) -> Logged:
    """The records of the offline run's transaction log (``run-<id>.wandb``: LevelDB log blocks of protobuf
    ``Record`` messages), which is all an offline run writes of its config, history and exit. W&B's service
    completes that file when it closes the run's stream, just after ``finish`` returns: ``teardown`` waits for
    the service to end."""
    import wandb
    from wandb.proto import wandb_internal_pb2

    wandb.teardown()
    [path] = folder.glob("wandb/offline-run-*/run-*.wandb")
    name, config, scalars, status = None, {}, {}, "open"
    for record in _leveldb_records(path.read_bytes(), wandb_internal_pb2.Record):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            name = record.run.display_name
            config = {item.key: json.loads(item.value_json) for item in record.run.config.update}
        elif kind == "history":
            row = {"/".join(item.nested_key) or item.key: json.loads(item.value_json) for item in record.history.item}
            for key, value in row.items():
                if not key.startswith("_"):
                    scalars.setdefault(key, {})[row["_step"]] = value
        elif kind == "exit":
            status = "finished" if record.exit.exit_code == 0 else "failed"
    config.pop("_wandb", None)
    return Logged(name, hyperparameters(config), scalars, status)


def _leveldb_records(data: bytes, message, block: int = 32768):
    assert data[:4] == b":W&B", "not a W&B transaction log"
    position, parts = 7, []
    while position + 7 <= len(data):
        if block - position % block < 7:  # a block's tail too short for a header is padding
            position += block - position % block
            continue
        _, length, kind = struct.unpack("<IHB", data[position : position + 7])
        parts.append(data[position + 7 : position + 7 + length])
        position += 7 + length
        if kind in (1, 4):  # a full record, or the last fragment of one
            yield message.FromString(b"".join(parts))
            parts = []


READERS = {"tensorboard": read_tensorboard, "mlflow": read_mlflow, "wandb": read_wandb}


def test_every_registered_logger_has_a_reader_here():
    assert set(READERS) == set(LOGGERS)


def mlflow_key(name: str, logger: str) -> str:
    return name.replace("@", "_at_") if logger == "mlflow" else name


def assert_close(logged: float, expected: float) -> None:
    assert logged == pytest.approx(expected, rel=1e-6, nan_ok=True)


@pytest.mark.parametrize("name", list(LOGGERS))
def test_a_logger_writes_the_config_the_training_values_and_every_evaluation(name, tmp_path):
    record, params, _ = fit(name, tmp_path / name)
    logged = READERS[name](tmp_path / name)
    hparams, scalars = logged.hparams, logged.scalars
    assert logged.status == "finished" and logged.name in (None, "logged")
    flat = hyperparameters(params)
    assert hparams == {"tensorboard": _tensorboard_values, "mlflow": _strings, "wandb": dict}[name](flat)
    assert {"learning_rate", "model_options.input_dim", "model_options.hidden_dims", "loss"} <= set(hparams)
    assert hparams["learning_rate"] == {"mlflow": "0.01"}.get(name, 0.01)
    for tag in ("train/loss", "train/learning_rate", "train/grad_norm"):
        assert sorted(scalars[tag]) == [2, 4, 5], f"{tag}: every 2 steps and the last"
        for step, value in scalars[tag].items():
            assert_close(value, record.steps[step][tag])
    assert sorted(record.evaluations) == [0, 2, 4]
    for step, metrics in record.evaluations.items():
        for metric, value in metrics.items():
            assert_close(scalars[mlflow_key(f"eval/{metric}", name)][step], value)
    assert len({value for value in scalars["train/loss"].values()}) > 1


def _tensorboard_values(flat: dict) -> dict:
    """What TensorBoard's session start (torch's ``hparams``) keeps: numbers and booleans as floats, strings."""
    return {k: float(v) if isinstance(v, int | float) else v for k, v in flat.items()}


def _strings(flat: dict) -> dict:
    """MLflow's params are strings."""
    return {k: str(v) for k, v in flat.items()}


@pytest.mark.parametrize("name", list(LOGGERS))
def test_a_failed_training_closes_its_logger_as_failed(name, tmp_path):
    record, _, _ = fit(name, tmp_path / name, fail_at=3)
    logged = READERS[name](tmp_path / name)
    assert logged.status == "failed"
    assert sorted(logged.scalars["train/loss"]) == [2, 3], "the last step is logged at train end"
    assert_close(logged.scalars["train/loss"][3], record.steps[3]["train/loss"])


@pytest.mark.parametrize("name", list(LOGGERS))
def test_a_logger_dropped_after_training_raised_closes_as_failed(name, tmp_path):
    with pytest.raises(RuntimeError, match="training broke"):
        fit(name, tmp_path / name, raise_at=3)
    gc.collect()
    logged = READERS[name](tmp_path / name)
    assert logged.status == "failed" and sorted(logged.scalars["train/loss"]) == [2]


def test_close_is_idempotent(tmp_path):
    _, _, logger = fit("tensorboard", tmp_path / "tb")
    logger.close("failed")
    assert READERS["tensorboard"](tmp_path / "tb").status == "finished"


@pytest.mark.parametrize("name", list(LOGGERS))
def test_a_missing_package_is_named(name, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, LOGGERS[name].module, None)  # what an uninstalled package looks like
    with pytest.raises(LoggerNotAvailableError, match=rf"the {name} logger needs the package .*pip install"):
        build_logger(name, tmp_path, {})


def test_unknown_loggers_are_refused():
    with pytest.raises(ValueError, match="unknown logger 'comet'; loggers: tensorboard, mlflow, wandb"):
        build_logger("comet", "x", {})
    with pytest.raises(ValueError, match="loggers"):
        FitConfig(loggers=["comet"])


def test_a_run_writes_every_logger_to_its_logs_folder(tmp_path):
    store = RunStore(tmp_path)
    config = fit_config(loggers=list(LOGGERS), eval_every_steps=2, eval_ks=[1, 5], log_every=1)
    run_id = store.create(config, vectors(48, seed=0), vectors(16, seed=1))
    execute_run(RunContext(store, run_id))
    assert store.status(run_id)["status"] == RunStatus.FINISHED
    metrics = store.metrics(run_id)
    for name in LOGGERS:
        folder = store.path(run_id) / "logs" / name
        logged = READERS[name](folder)
        assert logged.status == "finished" and logged.name in (None, run_id)
        assert sorted(logged.scalars["train/loss"]) == [1, 2, 3, 4, 5]
        assert logged.hparams["loggers"] == json.dumps(list(LOGGERS))
        for stage, step in (("before", 0), ("step 2", 2), ("step 4", 4)):
            value = logged.scalars[mlflow_key("eval/mrr@5", name)][step]
            assert math.isclose(value, metrics[stage]["mrr@5"], rel_tol=1e-6)
