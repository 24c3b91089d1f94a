import math

import numpy as np
import pytest
import torch

from finetuner_core.callbacks.base import Callback
from finetuner_core.callbacks.best_model import BestModelCheckpoint
from finetuner_core.callbacks.early_stopping import EarlyStopping
from finetuner_core.callbacks.evaluation import EvaluationCallback
from finetuner_core.callbacks.state import TrainState
from finetuner_core.config import ConfigError, FitConfig, parse_fit_config
from finetuner_core.models import build_model
from finetuner_core.runs import RunStatus, RunStore
from finetuner_core.runs import execute as execute_module
from finetuner_core.runs.context import RunContext
from finetuner_core.runs.execute import execute_run
from finetuner_core.training import loop
from finetuner_core.training.loop import train
from finetuner_protocol.data import LabeledItem

MLP_OPTIONS = {"input_dim": 8, "hidden_dims": [16]}


def mlp():
    return build_model("mlp", MLP_OPTIONS, "cpu")


def vectors(n: int = 48, classes: int = 4, seed: int = 0) -> list[LabeledItem]:
    rng = np.random.default_rng(seed)
    return [LabeledItem(rng.normal(size=8).astype(np.float32), str(i % classes)) for i in range(n)]


def config(**fields) -> FitConfig:
    base = dict(model="mlp", model_options=MLP_OPTIONS, batch_size=8, num_items_per_class=2, device="cpu")
    return FitConfig(**{**base, **fields})


def feed(callback: Callback, state: TrainState, losses=(), metrics=()) -> None:
    """Drive ``callback`` through steps with the given losses, or evaluations with the given metric values."""
    callback.on_train_begin(state)
    for value in losses:
        state.step += 1
        state.loss = value
        callback.on_step_end(state)
        if state.stop:
            return
    for value in metrics:
        state.step, state.loss = state.step + 1, 1.0
        state.metrics, state.metrics_step = {"mrr@10": value}, state.step
        callback.on_step_end(state)
        if state.stop:
            return


def nan_from(monkeypatch, step: int) -> None:
    """The loss turns NaN from training step ``step`` on."""
    real, calls = loop.make_task, []

    def make_task(records, config, model=None):
        task = real(records, config, model)
        loss = task.loss

        def patched(model, batch):
            calls.append(1)
            return loss(model, batch) * (float("nan") if len(calls) >= step else 1.0)

        task.loss = patched
        return task

    monkeypatch.setattr(loop, "make_task", make_task)


# --- EarlyStopping --------------------------------------------------------------------------------------------


def test_early_stopping_waits_patience_checks_without_improvement():
    state = TrainState()
    feed(EarlyStopping("loss", patience=2), state, losses=[1.0, 0.8, 0.9, 0.85, 0.7])
    assert state.stop and state.step == 4 and not state.failed
    assert "loss did not improve on 0.8 for 2 check(s), at step 4" in state.stop_reason


def test_early_stopping_on_a_metric_to_maximise_counts_evaluations_only():
    state = TrainState()
    feed(EarlyStopping("mrr@10", patience=2, mode="max"), state, metrics=[0.5, 0.6, 0.6, 0.7, 0.65, 0.6])
    assert state.stop and state.step == 6 and "mrr@10 did not improve on 0.7" in state.stop_reason
    state = TrainState()
    callback = EarlyStopping("mrr@10", patience=1, mode="max")
    callback.on_train_begin(state)
    for _ in range(5):  # steps without a new evaluation are not checks
        state.step += 1
        state.loss = 1.0
        callback.on_step_end(state)
    assert not state.stop


def test_early_stopping_min_delta_needs_a_real_improvement():
    state = TrainState()
    feed(EarlyStopping("loss", patience=2, min_delta=0.1), state, losses=[1.0, 0.95, 0.92, 0.5])
    assert state.stop and state.step == 3


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_a_non_finite_loss_stops_as_a_failure_whatever_is_monitored(bad):
    state = TrainState()
    feed(EarlyStopping("mrr@10", patience=None, mode="max"), state, losses=[1.0, bad, 0.5])
    assert state.stop and state.failed and state.step == 2
    assert state.stop_reason == f"training loss is {bad} at step 2"


def test_a_nan_loss_ends_training_at_that_step(monkeypatch):
    nan_from(monkeypatch, 3)
    state = train(mlp(), vectors(), config(epochs=3), [EarlyStopping(patience=None)])
    assert state.failed and state.step == 3 and "training loss is nan at step 3" == state.stop_reason


def test_bad_modes_are_refused():
    with pytest.raises(ValueError, match="mode must be 'min' or 'max'"):
        EarlyStopping(mode="up")


# --- EvaluationCallback ---------------------------------------------------------------------------------------


def test_evaluation_runs_every_n_steps_and_per_epoch_and_fills_the_state():
    calls, seen = [], []

    def evaluate():
        calls.append(1)
        return {"mrr@10": float(len(calls))}

    class Reader(Callback):
        def on_step_end(self, state):
            seen.append((state.step, state.metrics_step, dict(state.metrics)))

    evaluation = EvaluationCallback(evaluate, every_steps=4, per_epoch=True, initial={"mrr@10": 0.0})
    state = train(mlp(), vectors(), config(epochs=2), [evaluation, Reader()])  # 6 steps an epoch
    assert state.step == 12 and len(calls) == 4  # steps 4, 8, 12 and the end of epoch 1 (step 6)
    assert seen[0] == (1, 0, {"mrr@10": 0.0})
    assert [s for s, m, _ in seen if s == m] == [4, 8, 12]
    assert state.metrics == {"mrr@10": 4.0} and state.metrics_step == 12


def test_evaluation_needs_a_schedule():
    with pytest.raises(ValueError, match="every_steps, per_epoch or at_end"):
        EvaluationCallback(dict)


def test_evaluation_at_end_measures_the_last_step_once():
    from finetuner_core.callbacks.state import TrainState

    calls = []
    callback = EvaluationCallback(lambda: calls.append(1) or {"mrr@10": 0.5}, every_steps=2, at_end=True)
    state = TrainState()
    for step in (1, 2):
        state.step = step
        callback.on_step_end(state)
    callback.on_train_end(state)
    assert len(calls) == 1 and state.metrics_step == 2, "step 2 was just measured"
    state.step = 3
    callback.on_train_end(state)
    assert len(calls) == 2 and state.metrics_step == 3 and state.metrics == {"mrr@10": 0.5}


# --- BestModelCheckpoint --------------------------------------------------------------------------------------


def _scripted(values):
    """An evaluation that reports the given values in turn, whatever the model."""
    values = iter(values)
    return lambda: {"mrr@10": next(values)}


def _weights(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("on_disk", [False, True])
def test_the_checkpoint_restores_the_best_evaluated_weights(tmp_path, on_disk):
    model, snapshots = mlp(), {}

    class Snapshot(Callback):
        def on_step_end(self, state):
            snapshots[state.step] = _weights(model)

    evaluation = EvaluationCallback(_scripted([0.3, 0.9, 0.5]), every_steps=2, initial={"mrr@10": 0.2})
    checkpoint = BestModelCheckpoint(model, "mrr@10", "max", tmp_path / "best" if on_disk else None)
    state = train(model, vectors(), config(max_steps=6), [evaluation, Snapshot(), checkpoint])
    assert checkpoint.best == 0.9 and checkpoint.best_step == 4
    assert all(torch.equal(v, snapshots[4][k]) for k, v in model.state_dict().items())
    assert not all(torch.equal(v, snapshots[6][k]) for k, v in model.state_dict().items())
    assert state.metrics == {"mrr@10": 0.9} and state.metrics_step == 4
    assert (tmp_path / "best" / "best.pt").exists() == on_disk


def test_the_checkpoint_never_hands_back_a_model_worse_than_the_pretrained_one():
    model = mlp()
    pretrained = _weights(model)
    evaluation = EvaluationCallback(_scripted([0.3, 0.4]), every_steps=3, initial={"mrr@10": 0.5})
    train(model, vectors(), config(max_steps=6), [evaluation, BestModelCheckpoint(model, "mrr@10", "max")])
    assert all(torch.equal(v, pretrained[k]) for k, v in model.state_dict().items())


def test_without_the_initial_model_the_best_trained_one_is_kept():
    model = mlp()
    pretrained = _weights(model)
    evaluation = EvaluationCallback(_scripted([0.3, 0.4]), every_steps=3, initial={"mrr@10": 0.5})
    checkpoint = BestModelCheckpoint(model, "mrr@10", "max", include_initial=False)
    train(model, vectors(), config(max_steps=6), [evaluation, checkpoint])
    assert checkpoint.best_step == 6
    assert not all(torch.equal(v, pretrained[k]) for k, v in model.state_dict().items())


# --- wired into a run -----------------------------------------------------------------------------------------


def test_a_run_evaluates_every_n_steps_and_stores_each_evaluation(tmp_path):
    store = RunStore(tmp_path)
    fit = config(max_steps=4, eval_every_steps=2, eval_ks=[1, 5], monitor="mrr@5")
    run_id = store.create(fit, vectors(), vectors(20, seed=1))
    execute_run(RunContext(store, run_id))
    assert store.status(run_id)["status"] == RunStatus.FINISHED
    metrics = store.metrics(run_id)
    assert list(metrics) == ["before", "step 2", "step 4", "after"]
    assert metrics["step 2"].keys() == metrics["before"].keys()
    best = max(metrics[stage]["mrr@5"] for stage in ("before", "step 2", "step 4"))
    assert metrics["after"]["mrr@5"] == pytest.approx(best)
    assert metrics["after"]["mrr@5"] >= metrics["before"]["mrr@5"]


def test_a_run_whose_loss_turns_nan_fails_with_the_reason(tmp_path, monkeypatch):
    nan_from(monkeypatch, 2)
    store = RunStore(tmp_path)
    run_id = store.create(config(max_steps=5), vectors(), [])
    execute_run(RunContext(store, run_id))
    status = store.status(run_id)
    assert status["status"] == RunStatus.FAILED
    assert status["error"] == "TrainingFailed: training loss is nan at step 2"
    assert store.logs(run_id)[-1]["message"] == "failed: TrainingFailed: training loss is nan at step 2"


def test_a_run_can_stop_early_and_still_finish(tmp_path, monkeypatch):
    stopping = execute_module.EarlyStopping

    def always_worse(monitor, patience, mode):  # the loss never improves on the first step
        callback = stopping(monitor, patience, mode)
        callback.watch.better = lambda value, best: best is None
        return callback

    monkeypatch.setattr(execute_module, "EarlyStopping", always_worse)
    store = RunStore(tmp_path)
    run_id = store.create(config(epochs=5, early_stopping_patience=2), vectors(), [])
    execute_run(RunContext(store, run_id))
    assert store.status(run_id)["status"] == RunStatus.FINISHED
    messages = [entry["message"] for entry in store.logs(run_id)]
    assert any(m.startswith("early stopping: loss did not improve") and m.endswith("at step 3") for m in messages)


@pytest.mark.parametrize(
    "parameters,message",
    [
        ({"monitor": "mrr"}, "monitor: 'mrr' is no metric the evaluation reports; did you mean 'mrr@10'?"),
        ({"monitor": "mrr@7"}, "monitor: 'mrr@7' needs its cut-off in eval_ks"),
        ({"eval_every_steps": 0}, "eval_every_steps: Input should be greater than or equal to 1"),
        ({"early_stopping_patience": 0}, "early_stopping_patience: Input should be greater than or equal to 1"),
        ({"gradient_accumulation_steps": 0}, "gradient_accumulation_steps: Input should be greater than or equal"),
        ({"max_grad_norm": 0}, "max_grad_norm: Input should be greater than 0"),
        ({"layer_lr_decay": 1.5}, "layer_lr_decay: Input should be less than or equal to 1"),
    ],
)
def test_bad_engine_settings_are_named(parameters, message):
    with pytest.raises(ConfigError) as info:
        parse_fit_config(parameters)
    assert message in str(info.value)


# --- state for resuming ---------------------------------------------------------------------------------------


def test_early_stopping_goes_on_from_its_state_dict():
    whole, state = EarlyStopping("loss", patience=3), TrainState()
    feed(whole, state, losses=[1.0, 0.8, 0.9, 0.85])
    resumed = EarlyStopping("loss", patience=3)
    resumed.load_state_dict(whole.state_dict())
    assert resumed.state_dict() == {"best": 0.8, "waited": 2, "watch": {"seen": 4}}
    state.step, state.loss = 5, 0.95
    resumed.on_step_end(state)
    assert state.stop and "did not improve on 0.8 for 3 check(s), at step 5" in state.stop_reason


@pytest.mark.parametrize("on_disk", [False, True])
def test_the_best_model_checkpoint_carries_its_weights_in_its_state_dict(tmp_path, on_disk):
    model = mlp()
    checkpoint = BestModelCheckpoint(model, "mrr@10", "max", tmp_path / "first" if on_disk else None)
    state = TrainState()
    feed(checkpoint, state, metrics=[0.4, 0.7, 0.5])
    best_weights = _weights(model)  # the model has not changed: the best weights are these
    saved = checkpoint.state_dict()
    assert saved["best"] == 0.7 and saved["best_step"] == 2 and saved["watch"] == {"seen": 3}
    assert set(saved["weights"]) == set(best_weights)
    other = mlp()
    resumed = BestModelCheckpoint(other, "mrr@10", "max", tmp_path / "second" if on_disk else None)
    resumed.load_state_dict(saved)
    resumed.on_train_end(state)
    assert all(torch.equal(v, best_weights[k]) for k, v in other.state_dict().items())
    assert state.metrics == {"mrr@10": 0.7} and (tmp_path / "second" / "best.pt").exists() == on_disk


def test_callbacks_without_progress_have_an_empty_state():
    assert EvaluationCallback(dict, every_steps=1).state_dict() == {} and Callback().state_dict() == {}
