import copy
import os

import numpy as np
import pytest
import torch

from conftest import banking77_slice
from finetuner_core.callbacks.base import Callback
from finetuner_core.callbacks.best_model import BestModelCheckpoint
from finetuner_core.callbacks.early_stopping import EarlyStopping
from finetuner_core.callbacks.evaluation import EvaluationCallback
from finetuner_core.config import FitConfig
from finetuner_core.models import build_model
from finetuner_core.training.checkpoint import (
    FILE_NAME,
    CheckpointError,
    TrainingCheckpoint,
    has_checkpoint,
    load_checkpoint,
)
from finetuner_core.training.loop import train
from finetuner_protocol.data import LabeledItem


class StopAt(Callback):
    """Asks training to stop after step ``step`` (as a cancelled run does)."""

    def __init__(self, step: int):
        self.step = step

    def on_step_end(self, state):
        if state.step == self.step:
            state.request_stop("interrupted")


def interrupted_and_resumed(build, records, config, stop_at, tmp_path, callbacks=lambda model: []):
    """(model trained without a break, its final checkpoint), (model stopped at ``stop_at`` and resumed from a
    fresh copy, its final checkpoint)."""
    whole = build()
    whole_state = train(whole, records, config, callbacks(whole), checkpoint_dir=tmp_path / "whole")
    first = build()
    stopped = train(first, records, config, [*callbacks(first), StopAt(stop_at)], checkpoint_dir=tmp_path / "parts")
    assert stopped.stop and stopped.step == stop_at < whole_state.step
    assert load_checkpoint(tmp_path / "parts")["progress"]["step"] == stop_at
    resumed = build()
    resumed_state = train(resumed, records, config, callbacks(resumed), checkpoint_dir=tmp_path / "parts", resume=True)
    assert resumed_state.step == whole_state.step and not resumed_state.stop
    assert resumed_state.loss == pytest.approx(whole_state.loss, rel=1e-6)
    return (whole, load_checkpoint(tmp_path / "whole")), (resumed, load_checkpoint(tmp_path / "parts"))


def assert_same_tensors(a, b):
    """Equal nested dicts / lists of tensors and numbers."""
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for key in a:
            assert_same_tensors(a[key], b[key])
    elif isinstance(a, list | tuple):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            assert_same_tensors(x, y)
    elif isinstance(a, torch.Tensor):
        assert torch.equal(a, b)
    else:
        assert a == b or (a != a and b != b)  # NaN equals NaN here


def assert_same_training(whole, resumed):
    (whole_model, whole_checkpoint), (resumed_model, resumed_checkpoint) = whole, resumed
    assert_same_tensors(whole_model.state_dict(), resumed_model.state_dict())
    for part in ("model", "optimizer", "task_optimizers", "loss", "scheduler", "callbacks", "progress"):
        progress = part == "progress"
        a, b = whole_checkpoint[part], resumed_checkpoint[part]
        if progress:  # the time taken differs, nothing else
            a, b = ({k: v for k, v in p.items() if k != "elapsed_s"} for p in (a, b))
        assert_same_tensors(a, b)


# --- the packaged MiniLM in train mode (dropout on) on Banking77 ---------------------------------------------


@pytest.fixture(scope="module")
def banking(data_dir):
    return [LabeledItem(text, label) for text, label in banking77_slice(data_dir, "train", classes=6, per_class=8)]


@pytest.fixture(scope="module")
def pretrained():
    return build_model("all-MiniLM-L6-v2", None, "cpu")


@pytest.mark.slow
@pytest.mark.parametrize(
    "loss,accumulation,steps,stop_at",
    [("TripletMarginLoss", 1, 3, 2), ("ArcFaceLoss", 2, 2, 1)],
    ids=["triplet", "arcface-own-optimizer-accumulation"],
)
def test_a_resumed_training_ends_exactly_where_an_uninterrupted_one_does(
    loss, accumulation, steps, stop_at, banking, pretrained, tmp_path
):
    config = FitConfig(
        loss=loss,
        batch_size=8,
        num_items_per_class=4,
        learning_rate=1e-4,
        max_steps=steps,
        gradient_accumulation_steps=accumulation,
        max_grad_norm=1.0,
    )

    def build():
        return copy.deepcopy(pretrained)

    whole, resumed = interrupted_and_resumed(
        build, banking, config, stop_at, tmp_path, lambda model: [EarlyStopping("loss", patience=100)]
    )
    assert_same_training(whole, resumed)
    assert not all(torch.equal(v, pretrained.state_dict()[k]) for k, v in whole[0].state_dict().items())
    if loss == "ArcFaceLoss":
        assert resumed[1]["loss"] and resumed[1]["task_optimizers"][0]["state"], "class centres and their Adam"


# --- the mechanics, on a small MLP --------------------------------------------------------------------------

MLP = {"input_dim": 8, "hidden_dims": [16]}


def vectors(n: int = 48, classes: int = 4, seed: int = 0) -> list[LabeledItem]:
    rng = np.random.default_rng(seed)
    return [LabeledItem(rng.normal(size=8).astype(np.float32), str(i % classes)) for i in range(n)]


def mlp_config(**fields) -> FitConfig:
    base = dict(model="mlp", model_options=MLP, batch_size=8, num_items_per_class=2, device="cpu", epochs=2)
    return FitConfig(**{**base, **fields})


def mlp_builder():
    torch.manual_seed(0)
    initial = build_model("mlp", MLP, "cpu")
    return lambda: copy.deepcopy(initial)


@pytest.mark.parametrize("stop_at", [1, 5, 6, 7])  # 6 steps an epoch: within it, at its last step, after it
@pytest.mark.parametrize("interval", ["step", "epoch"])
def test_resuming_at_any_step_and_with_an_epoch_schedule_is_exact(stop_at, interval, tmp_path):
    config = mlp_config(scheduler_interval=interval, checkpoint_every_steps=4, learning_rate=1e-2)
    whole, resumed = interrupted_and_resumed(mlp_builder(), vectors(), config, stop_at, tmp_path)
    assert_same_training(whole, resumed)


def test_the_best_model_and_the_evaluations_resume_too(tmp_path):
    records = vectors()

    def callbacks(model):
        def separation() -> dict[str, float]:
            embeddings = model.encode([r.content for r in records])
            labels = np.array([r.label for r in records])
            same = labels[:, None] == labels[None]
            return {"separation": float((embeddings @ embeddings.T)[same].mean())}

        return [
            EvaluationCallback(separation, every_steps=2, initial=separation()),
            EarlyStopping("separation", patience=100, mode="max"),
            BestModelCheckpoint(model, "separation", "max", directory=tmp_path / f"best{id(model)}"),
        ]

    config = mlp_config(learning_rate=5e-2, epochs=3)
    whole, resumed = interrupted_and_resumed(mlp_builder(), records, config, 7, tmp_path, callbacks)
    assert_same_training(whole, resumed)
    best = resumed[1]["callbacks"]["BestModelCheckpoint"]
    assert best["best_step"] is not None and best["weights"] is not None


def test_only_the_latest_checkpoint_is_kept_and_it_loads_without_pickled_objects(tmp_path):
    assert not has_checkpoint(tmp_path)
    train(build_model("mlp", MLP, "cpu"), vectors(), mlp_config(checkpoint_every_steps=1), checkpoint_dir=tmp_path)
    assert os.listdir(tmp_path) == [FILE_NAME] and has_checkpoint(tmp_path)
    payload = torch.load(tmp_path / FILE_NAME, weights_only=True)
    assert payload["progress"]["step"] == 12 and payload["progress"]["epoch"] == 2
    assert isinstance(payload["rng"]["python"]["internal"], torch.Tensor)


def test_a_finished_training_resumes_to_no_further_steps(tmp_path):
    build, config = mlp_builder(), mlp_config()
    done = build()
    train(done, vectors(), config, checkpoint_dir=tmp_path)
    again = build()
    state = train(again, vectors(), config, checkpoint_dir=tmp_path, resume=True)
    assert state.step == 12
    assert_same_tensors(done.state_dict(), again.state_dict())


def test_a_searched_batch_size_is_taken_from_the_checkpoint(tmp_path):
    config = mlp_config(batch_size=None, max_steps=3)
    first = train(build_model("mlp", MLP, "cpu"), vectors(), config, [StopAt(1)], checkpoint_dir=tmp_path)
    state = train(build_model("mlp", MLP, "cpu"), vectors(), config, checkpoint_dir=tmp_path, resume=True)
    assert state.batch_size == first.batch_size and not any(n.startswith("batch_size chosen") for n in state.notes)
    assert state.notes[-1] == "resuming from the checkpoint of step 1 (epoch 1, 1 step(s) into it)"


def test_the_checkpoint_callback_can_be_given_and_runs_last(tmp_path):
    class Late(Callback):
        def on_step_end(self, state):
            if state.step == 2:
                state.request_stop("late")

    checkpoint = TrainingCheckpoint(tmp_path, every_steps=100)
    callbacks = [checkpoint, Late()]
    state = train(mlp(), vectors(), mlp_config(), callbacks)
    assert state.step == 2 and checkpoint.saved_step == 2, "it saw the stop a later callback asked for"


# --- bad checkpoints ----------------------------------------------------------------------------------------


def _write_real_checkpoint(tmp_path):
    train(build_model("mlp", MLP, "cpu"), vectors(), mlp_config(max_steps=2), checkpoint_dir=tmp_path)
    return tmp_path / FILE_NAME


@pytest.mark.parametrize(
    "damage,message",
    [
        (lambda path: path.write_bytes(b"not a checkpoint at all"), "is not a readable training checkpoint"),
        (lambda path: path.write_bytes(path.read_bytes()[:1000]), "is not a readable training checkpoint"),
        (lambda path: torch.save({"weight": torch.ones(2)}, path), "is not a training checkpoint"),
        (lambda path: torch.save(torch.nn.Linear(2, 2), path), "is not a readable training checkpoint"),
        (lambda path: path.unlink(), "no training checkpoint to resume from"),
    ],
    ids=["garbage", "truncated", "foreign-state-dict", "pickled-module", "missing"],
)
def test_a_corrupted_or_foreign_checkpoint_is_refused_clearly(damage, message, tmp_path):
    damage(_write_real_checkpoint(tmp_path))
    model = build_model("mlp", MLP, "cpu")
    with pytest.raises(CheckpointError, match=message) as info:
        train(model, vectors(), mlp_config(max_steps=2), checkpoint_dir=tmp_path, resume=True)
    assert str(tmp_path / FILE_NAME) in str(info.value)


def test_resuming_with_other_settings_or_another_model_is_refused(tmp_path):
    _write_real_checkpoint(tmp_path)
    with pytest.raises(CheckpointError, match=r"other settings: learning_rate 2e-05 -> 0.001; seed 42 -> 1"):
        train(
            mlp(), vectors(), mlp_config(max_steps=2, learning_rate=1e-3, seed=1), checkpoint_dir=tmp_path, resume=True
        )
    with pytest.raises(CheckpointError, match="other settings: batch_size 8 -> 16"):
        train(mlp(), vectors(), mlp_config(max_steps=2, batch_size=16), checkpoint_dir=tmp_path, resume=True)
    wider = build_model("mlp", {**MLP, "hidden_dims": [32]}, "cpu")
    with pytest.raises(CheckpointError, match="does not fit this training"):
        train(wider, vectors(), mlp_config(max_steps=2), resume=tmp_path / FILE_NAME)


def test_resume_needs_a_place_to_resume_from():
    with pytest.raises(ValueError, match="resume=True needs checkpoint_dir"):
        train(mlp(), vectors(), mlp_config(), resume=True)


def mlp():
    return build_model("mlp", MLP, "cpu")
