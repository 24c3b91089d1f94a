import copy
import os
import random

import numpy as np
import pytest
import torch

from conftest import banking77_slice
from finetuner_core.callbacks.base import Callback
from finetuner_core.callbacks.early_stopping import EarlyStopping
from finetuner_core.callbacks.log import LoggingCallback
from finetuner_core.callbacks.stop import StopCallback
from finetuner_core.config import FitConfig
from finetuner_core.models import build_model
from finetuner_core.training import loop
from finetuner_core.training.checkpoint import load_checkpoint
from finetuner_core.training.loop import accumulate, train
from finetuner_core.training.losses import LOSSES
from finetuner_core.training.optimizers import build_optimizer, layer_of, parameter_groups
from finetuner_core.training.tasks import Task
from finetuner_protocol.data import LabeledItem


def class_separation(model, records) -> float:
    """Mean same-class cosine similarity minus mean other-class similarity."""
    embeddings = model.encode([r.content for r in records])
    labels = np.array([r.label for r in records])
    sim = embeddings @ embeddings.T
    same = labels[:, None] == labels[None]
    np.fill_diagonal(same, False)
    other = labels[:, None] != labels[None]
    return float(sim[same].mean() - sim[other].mean())


@pytest.fixture(scope="module")
def records(data_dir):
    return [LabeledItem(text, label) for text, label in banking77_slice(data_dir, "train", classes=6, per_class=8)]


@pytest.mark.slow
@pytest.mark.parametrize("loss", sorted(name for name, spec in LOSSES.items() if not spec.pairs))
def test_a_few_steps_of_every_loss_pull_classes_apart(loss, records):
    model = build_model("all-MiniLM-L6-v2", None, "cpu")
    before = class_separation(model, records)
    config = FitConfig(
        loss=loss,
        batch_size=24,
        num_items_per_class=4,
        learning_rate=1e-4,
        epochs=3,
        max_steps=6,
        warmup_ratio=0,
    )
    state = train(model, records, config)
    assert state.step == 6 and np.isfinite(state.loss)
    assert class_separation(model, records) > before + 0.01


def test_callbacks_see_every_step_and_can_stop_training(records):
    model = build_model("all-MiniLM-L6-v2", None, "cpu")
    seen, lines = [], []

    class Recorder(Callback):
        def on_step_end(self, state):
            seen.append((state.step, state.loss))

    config = FitConfig(batch_size=16, num_items_per_class=4, epochs=3, log_every=1)
    state = train(
        model,
        records,
        config,
        [Recorder(), LoggingCallback(lines.append, 1), StopCallback(lambda: len(seen) >= 2)],
    )
    assert state.stop and state.step == 2 and [s for s, _ in seen] == [1, 2]
    assert lines[0].startswith("training: 3 epoch(s)") and "step 2/" in lines[2]


# --- the engine on a small MLP over vectors ------------------------------------------------------------------

MLP_OPTIONS = {"input_dim": 8, "hidden_dims": [16]}


def mlp(**options):
    return build_model("mlp", {**MLP_OPTIONS, **options}, "cpu")


def vectors(n: int = 48, classes: int = 4) -> list[LabeledItem]:
    rng = np.random.default_rng(0)
    return [LabeledItem(rng.normal(size=8).astype(np.float32), str(i % classes)) for i in range(n)]


def mlp_config(**fields) -> FitConfig:
    base = dict(model="mlp", model_options=MLP_OPTIONS, batch_size=8, num_items_per_class=2, device="cpu")
    return FitConfig(**{**base, **fields})


class MeanSquaredTask(Task):
    """A loss that is a mean over items: the mean squared embedding of the batch minus a target."""

    def __init__(self, records):
        self.contents = [r.content for r in records]

    def loss(self, model, batch):
        return ((model.embed([self.contents[i] for i in batch]) - 0.1) ** 2).sum(-1).mean()


def _grads(model):
    return [p.grad.clone() for p in model.parameters()]


def test_accumulating_half_batches_gives_the_gradient_of_the_full_batch():
    records, full = vectors(), list(range(16))
    one, two = mlp(), mlp()
    two.load_state_dict(one.state_dict())
    task = MeanSquaredTask(records)
    loss_one = accumulate(task, one, [full])
    loss_two = accumulate(task, two, [full[:8], full[8:]])
    assert loss_two == pytest.approx(loss_one, rel=1e-6)
    for a, b in zip(_grads(one), _grads(two), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)
    three = mlp()
    three.load_state_dict(one.state_dict())
    accumulate(task, three, [full[:8]])  # half the data alone: a different gradient
    assert not all(torch.allclose(a, b) for a, b in zip(_grads(one), _grads(three), strict=True))


def test_a_step_is_one_update_over_the_accumulated_batches():
    updates = []

    class Counter(Callback):
        def on_step_end(self, state):
            updates.append(state.step)

    config = mlp_config(epochs=2, gradient_accumulation_steps=4)  # 6 batches an epoch -> 2 steps an epoch
    state = train(mlp(), vectors(), config, [Counter()])
    assert state.total_steps == 4 and updates == [1, 2, 3, 4]


def test_clipping_bounds_the_gradient_norm():
    norms = []

    class GradNorm(Callback):
        def on_step_end(self, state):
            grads = [p.grad for p in model.parameters() if p.grad is not None]
            norms.append((state.grad_norm, float(torch.linalg.vector_norm(torch.cat([g.flatten() for g in grads])))))

    model = mlp()
    train(model, vectors(), mlp_config(max_steps=3, max_grad_norm=1e-3), [GradNorm()])
    assert len(norms) == 3
    assert all(before > 1e-3 and after <= 1e-3 * (1 + 1e-4) for before, after in norms)


def test_layer_wise_decay_gives_each_layer_its_learning_rate():
    model = mlp(hidden_dims=[16, 16], output_dim=4)  # backbone.0, backbone.2, projection
    groups = parameter_groups(model, 1e-3, layer_lr_decay=0.5)
    assert [(g["layer"], g["lr"]) for g in groups] == [
        ("backbone.0", 2.5e-4),
        ("backbone.2", 5e-4),
        ("projection", 1e-3),
    ]
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))
    with_head = parameter_groups(model, 1e-3, layer_lr_decay=0.5, head_learning_rate=1e-2)
    assert [(g["layer"], g["lr"]) for g in with_head] == [
        ("backbone.0", 5e-4),
        ("backbone.2", 1e-3),
        ("projection", 1e-2),
    ]
    assert [(g["layer"], g["lr"]) for g in parameter_groups(model, 1e-3)] == [("all", 1e-3)]


def test_frozen_parameters_get_no_group_and_the_optimizer_keeps_the_groups():
    model = mlp(output_dim=4, freeze=True)
    optimizer = build_optimizer(
        model, mlp_config(layer_lr_decay=0.9, optimizer="SGD", optimizer_options={"momentum": 0.9})
    )
    assert [g["layer"] for g in optimizer.param_groups] == ["projection"]
    assert optimizer.param_groups[0]["momentum"] == 0.9


def test_a_layer_is_the_block_a_parameter_belongs_to():
    assert layer_of("backbone.0.auto_model.encoder.layer.3.attention.self.query.weight").endswith("layer.3")
    assert layer_of("projection.weight") == "projection" and layer_of("logit_scale") == "logit_scale"


def test_the_schedule_can_advance_per_epoch():
    rates = []

    class Rate(Callback):
        def on_step_end(self, state):
            rates.append(state.learning_rate)

    config = mlp_config(epochs=4, scheduler="linear", scheduler_interval="epoch", warmup_ratio=0, learning_rate=1.0)
    train(mlp(), vectors(), config, [Rate()])  # 6 steps an epoch; one epoch of warm-up, then 1, 2/3, 1/3
    assert rates == pytest.approx([1.0] * 12 + [2 / 3] * 6 + [1 / 3] * 6)


def nan_task(monkeypatch, after_steps: int = 0):
    """Make the loss NaN from the step after ``after_steps`` on."""
    real = loop.make_task
    calls = []

    def make_task(records, config, model=None):
        task = real(records, config, model)
        loss = task.loss

        def patched(model, batch):
            calls.append(1)
            value = loss(model, batch)
            return value * float("nan") if len(calls) > after_steps else value

        task.loss = patched
        return task

    monkeypatch.setattr(loop, "make_task", make_task)


def test_a_non_finite_loss_is_not_applied(monkeypatch):
    nan_task(monkeypatch)
    model = mlp()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    state = train(model, vectors(), mlp_config(max_steps=2))
    assert np.isnan(state.loss) and state.step == 2
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_classes_smaller_than_num_items_per_class_are_reported_in_the_logs():
    records = [LabeledItem(np.full(4, i % 3, np.float32) + i, str(i % 3)) for i in range(12)]
    records += [LabeledItem(np.full(4, 9.0, np.float32), "rare"), LabeledItem(np.full(4, 8.0, np.float32), "rare")]
    config = FitConfig(model="mlp", batch_size=8, num_items_per_class=4, max_steps=1)
    lines = []
    train(
        build_model("mlp", {"input_dim": 4, "hidden_dims": [4]}, "cpu"),
        records,
        config,
        [LoggingCallback(lines.append)],
    )
    assert lines[0] == (
        "note: 1 class(es) have fewer than num_items_per_class=4 items: 'rare' (2); "
        "their batches hold all the items they have"
    )


# --- seeds and determinism ------------------------------------------------------------------------------------


@pytest.mark.slow
def test_the_same_seed_gives_the_same_weights_and_another_seed_other_ones(records):
    """MiniLM in train mode: the sampler's order and the dropout masks both follow the seed."""
    pretrained = build_model("all-MiniLM-L6-v2", None, "cpu")
    seen = []

    class Settings(Callback):
        def on_train_begin(self, state):
            seen.append((torch.are_deterministic_algorithms_enabled(), os.environ.get("CUBLAS_WORKSPACE_CONFIG")))

    def tuned(seed: int) -> dict[str, torch.Tensor]:
        model = copy.deepcopy(pretrained)
        config = FitConfig(batch_size=8, num_items_per_class=4, max_steps=2, seed=seed, deterministic=True)
        train(model, records, config, [Settings()])
        return model.state_dict()

    first, again, other = tuned(7), tuned(7), tuned(8)
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not all(torch.equal(first[k], other[k]) for k in first)
    assert seen == [(True, ":4096:8")] * 3
    assert not torch.are_deterministic_algorithms_enabled() and "CUBLAS_WORKSPACE_CONFIG" not in os.environ


def test_training_seeds_python_numpy_and_torch():
    drawn = []

    class Draw(Callback):
        def on_train_begin(self, state):
            drawn.append((random.random(), float(np.random.rand()), float(torch.rand(()))))

    for seed in (3, 3, 4):
        train(mlp(), vectors(), mlp_config(max_steps=1, seed=seed), [Draw()])
    assert drawn[0] == drawn[1] != drawn[2]


def test_with_dropout_the_seed_decides_the_weights():
    """A small MLP with dropout, each run from the same initial weights, sampled in the same order."""
    initial = mlp(hidden_dims=[64])
    initial.backbone = torch.nn.Sequential(initial.backbone, torch.nn.Dropout(0.5))

    def tuned(seed: int) -> dict[str, torch.Tensor]:
        model = copy.deepcopy(initial)
        train(model, vectors(), mlp_config(max_steps=3, seed=seed, sampler="random", batch_size=48))
        return model.state_dict()

    first, again, other = tuned(5), tuned(5), tuned(6)  # each step one batch of all 48 items
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not all(torch.equal(first[k], other[k]) for k in first)


# --- a loss that turns NaN ------------------------------------------------------------------------------------


def test_a_weight_that_turns_nan_fails_training_at_that_step_and_keeps_the_last_good_checkpoint(tmp_path):
    class Poison(Callback):
        def on_step_end(self, state):
            if state.step == 3:
                with torch.no_grad():
                    model.backbone[0].weight[0, 0] = float("nan")

    model = mlp()
    state = train(
        model,
        vectors(),
        mlp_config(epochs=3, checkpoint_every_steps=2),
        [Poison(), EarlyStopping(patience=None)],
        checkpoint_dir=tmp_path,
    )
    assert state.failed and state.step == 4 and state.stop_reason == "training loss is nan at step 4"
    saved = load_checkpoint(tmp_path)
    assert saved["progress"]["step"] == 2
    assert all(torch.isfinite(v).all() for v in saved["model"].values())


# --- overfitting a few classes: the geometry ------------------------------------------------------------------


def clustered(n: int = 48, classes: int = 4) -> list[LabeledItem]:
    """Noisy vectors around one random centre per class: classes overlap before training."""
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(classes, 8))
    return [
        LabeledItem((0.7 * centres[i % classes] + rng.normal(size=8)).astype(np.float32), str(i % classes))
        for i in range(n)
    ]


def nearest_neighbour_accuracy(model, records) -> float:
    """Share of items whose nearest other item (by cosine) has their class."""
    embeddings = model.encode([r.content for r in records])
    labels = np.array([r.label for r in records])
    sim = embeddings @ embeddings.T
    np.fill_diagonal(sim, -np.inf)
    return float((labels[sim.argmax(1)] == labels).mean())


def test_a_small_mlp_overfits_a_few_classes_into_clean_clusters():
    records, model = clustered(), mlp(hidden_dims=[64, 32])
    assert nearest_neighbour_accuracy(model, records) < 0.7 and class_separation(model, records) < 0.3
    config = mlp_config(
        model_options={**MLP_OPTIONS, "hidden_dims": [64, 32]},
        batch_size=16,
        num_items_per_class=4,
        epochs=40,
        learning_rate=1e-2,
        warmup_ratio=0,
        scheduler="constant",
        precision="fp32",
    )
    train(model, records, config)
    assert nearest_neighbour_accuracy(model, records) == 1.0
    assert class_separation(model, records) > 0.5
