import math

import numpy as np
import pytest
import torch

from finetuner_core.callbacks.base import Callback
from finetuner_core.config import ConfigError, FitConfig, parse_fit_config
from finetuner_core.models import build_model
from finetuner_core.training.loop import optimizer_step, train
from finetuner_core.training.precision import (
    PRECISIONS,
    AutocastModel,
    Precision,
    PrecisionError,
    cpu_has_fast_bf16,
    resolve_precision,
)
from finetuner_core.training.tasks import Task
from finetuner_protocol.data import LabeledItem

MLP = {"input_dim": 8, "hidden_dims": [32, 16]}


def vectors(n: int = 48, classes: int = 4) -> list[LabeledItem]:
    rng = np.random.default_rng(0)
    return [LabeledItem(rng.normal(size=8).astype(np.float32), str(i % classes)) for i in range(n)]


def mlp_config(**fields) -> FitConfig:
    base = dict(model="mlp", model_options=MLP, batch_size=8, num_items_per_class=2, device="cpu")
    return FitConfig(**{**base, **fields})


# --- the decision ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "requested,device,cuda_bf16,cpu_fast_bf16,expected",
    [
        ("auto", "cuda", True, False, "bf16"),
        ("auto", "cuda", False, True, "fp16"),
        ("auto", "cpu", False, True, "bf16"),
        ("auto", "cpu", True, False, "fp32"),
        ("fp32", "cuda", True, True, "fp32"),
        ("fp32", "cpu", False, True, "fp32"),
        ("bf16", "cuda", True, False, "bf16"),
        ("bf16", "cpu", False, False, "bf16"),
        ("fp16", "cuda", True, False, "fp16"),
        ("fp16", "cuda", False, False, "fp16"),
        ("auto", "mps", True, True, "fp32"),
    ],
)
def test_the_precision_follows_from_the_device_and_what_it_supports(
    requested, device, cuda_bf16, cpu_fast_bf16, expected
):
    assert resolve_precision(requested, device, cuda_bf16, cpu_fast_bf16) == expected


@pytest.mark.parametrize(
    "requested,device,cuda_bf16,message",
    [
        ("fp16", "cpu", False, "precision 'fp16' needs a CUDA device"),
        ("bf16", "cuda", False, "precision 'bf16' is not supported by this GPU"),
        ("bf16", "mps", False, "precision 'bf16' runs on CUDA or the CPU"),
        ("fp8", "cpu", False, "unknown precision 'fp8'; allowed: auto, fp32, bf16, fp16"),
    ],
)
def test_precisions_a_device_cannot_run_are_refused(requested, device, cuda_bf16, message):
    with pytest.raises(PrecisionError, match=message):
        resolve_precision(requested, device, cuda_bf16, True)


def test_auto_on_this_cpu_is_bf16_exactly_when_torch_sees_bf16_instructions():
    flags = [torch.cpu._is_amx_tile_supported(), torch.cpu._is_avx512_bf16_supported()]
    assert cpu_has_fast_bf16() == any(flags)
    assert Precision.for_device("auto", "cpu").name == ("bf16" if any(flags) else "fp32")
    assert set(PRECISIONS) == set(FitConfig.model_fields["precision"].annotation.__args__)


def test_fp16_on_the_cpu_is_refused_by_the_config_and_by_train():
    with pytest.raises(ConfigError, match="precision: 'fp16' needs CUDA"):
        parse_fit_config({"precision": "fp16", "device": "cpu"})
    config = FitConfig(model="mlp", model_options=MLP, batch_size=8, num_items_per_class=2, precision="fp16")
    with pytest.raises(PrecisionError, match="precision 'fp16' needs a CUDA device"):
        train(build_model("mlp", MLP, "cpu"), vectors(), config)


# --- bf16 on the CPU ------------------------------------------------------------------------------------------


def test_bf16_on_the_cpu_trains_with_the_layers_in_bf16_and_the_loss_in_fp32():
    model = build_model("mlp", MLP, "cpu")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    layer_types, loss_types, losses = set(), set(), []
    model.backbone[0].register_forward_hook(lambda module, args, output: layer_types.add(output.dtype))

    class Recorder(Callback):
        def on_step_end(self, state):
            losses.append(state.loss)

    real = AutocastModel._autocast

    def recording(self, method, *args, **kwargs):
        output = real(self, method, *args, **kwargs)
        loss_types.add(output.dtype)
        return output

    AutocastModel._autocast = recording
    try:
        state = train(model, vectors(), mlp_config(precision="bf16", max_steps=4, learning_rate=1e-2), [Recorder()])
    finally:
        AutocastModel._autocast = real
    assert state.precision == "bf16" and len(losses) == 4 and all(math.isfinite(x) for x in losses)
    assert layer_types == {torch.bfloat16} and loss_types == {torch.float32}
    assert all(v.dtype == torch.float32 for v in model.state_dict().values()), "the weights stay fp32"
    assert not all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_in_fp32_the_task_sees_the_model_itself():
    model = build_model("mlp", MLP, "cpu")
    assert Precision.for_device("fp32", "cpu").view(model) is model
    view = Precision.for_device("bf16", "cpu").view(model)
    assert view.dim == model.dim and view.device == model.device and view.embed([np.ones(8)]).dtype == torch.float32


# --- fp16 loss scaling (CPU autocast fp16 and torch's GradScaler on the CPU, as on CUDA) --------------------------


class SquaredTask(Task):
    def __init__(self, records, factor: float = 1.0):
        self.contents, self.factor = [r.content for r in records], factor

    def loss(self, model, batch):
        return ((model.embed([self.contents[i] for i in batch]) * self.factor) ** 2).sum(-1).mean()


def scaled(init_scale: float) -> Precision:
    return Precision("fp16", torch.device("cpu"), torch.amp.GradScaler("cpu", init_scale=init_scale))


def test_the_scaler_unscales_before_clipping_and_the_update_matches_fp32():
    records, batch = vectors(), list(range(16))
    reference = build_model("mlp", {**MLP, "normalize": False}, "cpu")
    model = build_model("mlp", {**MLP, "normalize": False}, "cpu")
    model.load_state_dict(reference.state_dict())
    task = SquaredTask(records)
    plain = Precision("fp32", torch.device("cpu"))
    fp32 = optimizer_step(task, reference, [torch.optim.SGD(reference.parameters(), lr=0.1)], [batch], plain)
    fp16 = optimizer_step(task, model, [torch.optim.SGD(model.parameters(), lr=0.1)], [batch], scaled(1024.0))
    assert fp16[2] and fp16[0] == pytest.approx(fp32[0], rel=1e-2)
    assert fp16[1] == pytest.approx(fp32[1], rel=2e-2), "the norm of the unscaled gradients"
    for a, b in zip(reference.parameters(), model.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=2e-2, atol=2e-3)
    clipped = scaled(1024.0)
    _, norm, applied = optimizer_step(
        task, model, [torch.optim.SGD(model.parameters(), lr=0.1)], [batch], clipped, 1e-3
    )
    total = torch.linalg.vector_norm(torch.cat([p.grad.flatten() for p in model.parameters()]))
    assert applied and norm > 1e-3 and float(total) <= 1e-3 * (1 + 1e-3)


def test_a_step_whose_fp16_gradients_overflow_is_skipped_and_the_scale_drops():
    model = build_model("mlp", {**MLP, "normalize": False}, "cpu")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    precision = scaled(2.0**40)  # loss * scale overflows fp16 in the backward pass
    optimizers = [torch.optim.SGD(model.parameters(), lr=0.1)]
    loss, _, applied = optimizer_step(SquaredTask(vectors(), 100.0), model, optimizers, [list(range(16))], precision)
    assert math.isfinite(loss) and not applied
    assert precision.scaler.get_scale() == 2.0**39
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
