import numpy as np
import pytest
import torch
from torch import nn

from conftest import cifar10_files
from finetuner_core.callbacks.base import Callback
from finetuner_core.callbacks.state import TrainState
from finetuner_core.callbacks.wiseft import WiSEFT
from finetuner_core.config import FitConfig
from finetuner_core.models import build_model, load_model
from finetuner_core.runs import RunStatus, RunStore
from finetuner_core.runs.context import RunContext
from finetuner_core.runs.execute import execute_run
from finetuner_core.training.loop import train
from finetuner_protocol.data import LabeledItem
from finetuner_protocol.data.images import load_image
from finetuner_protocol.data.records import PairItem

MLP_OPTIONS = {"input_dim": 8, "hidden_dims": [16], "output_dim": 4}


def vectors(n: int = 48, classes: int = 4, seed: int = 0) -> list[LabeledItem]:
    rng = np.random.default_rng(seed)
    return [LabeledItem(rng.normal(size=8).astype(np.float32), str(i % classes)) for i in range(n)]


def mlp_config(**fields) -> FitConfig:
    base = dict(model="mlp", model_options=MLP_OPTIONS, batch_size=8, num_items_per_class=2, device="cpu")
    return FitConfig(**{**base, "learning_rate": 1e-2, "max_steps": 4, **fields})


class Snapshot(Callback):
    """The weights at train begin and at train end (put it before WiSE-FT to see the fine-tuned ones)."""

    def __init__(self, model: nn.Module):
        self.model = model

    def on_train_begin(self, state: TrainState) -> None:
        self.initial = {k: v.detach().clone() for k, v in self.model.state_dict().items()}

    def on_train_end(self, state: TrainState) -> None:
        self.tuned = {k: v.detach().clone() for k, v in self.model.state_dict().items()}


def fine_tune(alpha: float, **options):
    model = build_model("mlp", {**MLP_OPTIONS, **options}, "cpu")
    snapshot = Snapshot(model)
    train(model, vectors(), mlp_config(model_options={**MLP_OPTIONS, **options}), [snapshot, WiSEFT(model, alpha)])
    return model, snapshot


def test_alpha_one_leaves_the_fine_tuned_weights():
    model, snapshot = fine_tune(1.0)
    for name, value in model.state_dict().items():
        assert torch.equal(value, snapshot.tuned[name]), name
    assert any(not torch.equal(snapshot.initial[k], snapshot.tuned[k]) for k in snapshot.tuned), "training moved"


def test_alpha_half_gives_the_average_and_frozen_parameters_stay():
    model, snapshot = fine_tune(0.5, freeze=["0"])
    state = model.state_dict()
    assert torch.equal(state["backbone.0.weight"], snapshot.initial["backbone.0.weight"])
    trainable = [name for name, p in model.named_parameters() if p.requires_grad]
    assert trainable == ["projection.weight", "projection.bias"]
    for name in trainable:
        initial, tuned = snapshot.initial[name], snapshot.tuned[name]
        assert not torch.equal(initial, tuned)
        assert torch.equal(state[name], 0.5 * initial + 0.5 * tuned), name


def test_buffers_changed_by_training_are_interpolated_the_others_kept():
    model = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4))
    model.register_buffer("mask", torch.tensor([0.0, -float("inf")]))
    wise = WiSEFT(model, 0.25)
    wise.on_train_begin(TrainState())
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    model(torch.randn(16, 4) * 3 + 1)  # BatchNorm statistics move
    with torch.no_grad():
        model[0].weight.add_(1.0)
    tuned = {k: v.clone() for k, v in model.state_dict().items()}
    wise.on_train_end(TrainState(step=1))
    state = model.state_dict()
    for name in ["0.weight", "1.running_mean", "1.running_var"]:
        assert torch.equal(state[name], 0.75 * initial[name] + 0.25 * tuned[name]), name
    assert int(state["1.num_batches_tracked"]) == 1
    assert torch.equal(state["mask"], tuned["mask"])


@pytest.mark.parametrize("stop", [{"failed": True}, {"failed": False}])
def test_a_failed_or_cancelled_training_is_left_as_it_is(stop):
    model = nn.Linear(2, 2)
    wise = WiSEFT(model, 0.5)
    wise.on_train_begin(TrainState())
    with torch.no_grad():
        model.weight.add_(1.0)
    tuned = model.weight.detach().clone()
    state = TrainState(step=1)
    state.request_stop("cancelled" if not stop["failed"] else "loss is nan", **stop)
    wise.on_train_end(state)
    assert torch.equal(model.weight, tuned)


@pytest.mark.parametrize("alpha", [0.0, 1.5, -1])
def test_alpha_outside_the_unit_interval_is_refused(alpha):
    with pytest.raises(ValueError, match="alpha must be in"):
        WiSEFT(nn.Linear(2, 2), alpha)
    with pytest.raises(ValueError, match="wise_ft_alpha"):
        FitConfig(wise_ft_alpha=alpha)


def test_a_run_saves_the_interpolated_model(tmp_path):
    """Same seed, same data: the run with alpha 0.5 saves the average of the initial weights and the weights
    of the run without WiSE-FT."""
    store, train_data = RunStore(tmp_path), vectors()
    saved = {}
    for alpha in (None, 0.5):
        config = mlp_config(wise_ft_alpha=alpha)
        run_id = store.create(config, train_data, [])
        torch.manual_seed(config.seed)  # the state a run builds its model in (it may seed itself as well)
        execute_run(RunContext(store, run_id))
        assert store.status(run_id)["status"] == RunStatus.FINISHED
        saved[alpha] = load_model(store.artifact_dir(run_id), "cpu").state_dict()
        if alpha:
            assert any(entry["message"].startswith("WiSE-FT: weights interpolated") for entry in store.logs(run_id))
    torch.manual_seed(config.seed)
    initial = build_model("mlp", MLP_OPTIONS, "cpu").state_dict()
    for name, value in saved[0.5].items():
        assert torch.equal(value, 0.5 * initial[name] + 0.5 * saved[None][name]), name


@pytest.mark.slow
def test_wise_ft_on_the_two_tower_clip_with_cifar10_pairs(data_dir):
    model = build_model("lit-minilm-efficientnet-lite0", {"image_size": 32}, "cpu")
    pairs = [
        PairItem(f"a photo of a {label}", load_image(path, str(path))) for path, label in cifar10_files(data_dir, 4, 2)
    ]
    snapshot = Snapshot(model)
    config = FitConfig(
        model="lit-minilm-efficientnet-lite0",
        model_options={"image_size": 32},
        batch_size=8,
        max_steps=2,
        learning_rate=1e-2,
        device="cpu",
        wise_ft_alpha=0.5,
    )
    train(model, pairs, config, [snapshot, WiSEFT(model, config.wise_ft_alpha)])
    state = model.state_dict()
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert {"clip.logit_scale", "clip.visual.head.proj.weight", "clip.text.proj.weight"} == trainable
    for name in state:
        initial, tuned = snapshot.initial[name], snapshot.tuned[name]
        if name in trainable:
            assert not torch.equal(initial, tuned), f"{name} was trained"
            assert torch.equal(state[name], 0.5 * initial + 0.5 * tuned), name
        else:
            assert torch.equal(state[name], tuned), name
