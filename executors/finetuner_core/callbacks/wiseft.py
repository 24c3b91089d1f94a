"""WiSE-FT (Wortsman et al., 2022, "Robust fine-tuning of zero-shot models"): weight-space ensembling.

At train end the fine-tuned weights are replaced by ``(1 - alpha) * initial + alpha * fine_tuned``, the initial
weights being those at train begin. This keeps much of the pretrained model's robustness on data unlike the
training data at little cost in-distribution; ``alpha = 1`` is plain fine-tuning.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from finetuner_core.callbacks.base import Callback
from finetuner_core.callbacks.state import TrainState


class WiSEFT(Callback):
    """Interpolates the trainable parameters between their values at train begin (kept as a CPU copy) and at
    train end. Floating-point buffers that training changed (BatchNorm statistics with
    ``freeze_batchnorm=False``) are interpolated the same way; other buffers keep their trained values, and frozen
    parameters are not touched. Put it after the callback that restores the best model, so that it acts on the
    model that is saved. A failed or cancelled training is left as it is.
    """

    def __init__(self, model: nn.Module, alpha: float, log: Callable[[str], None] = lambda message: None):
        if not 0 < alpha <= 1:
            raise ValueError(f"WiSE-FT alpha must be in (0, 1], got {alpha}")
        self.model, self.alpha, self.log = model, alpha, log
        self.initial: dict[str, torch.Tensor] = {}
        self.buffers: dict[str, torch.Tensor] = {}

    def on_train_begin(self, state: TrainState) -> None:
        if self.alpha == 1:  # the fine-tuned weights as they are
            return
        self.initial = _cpu_copy((n, p) for n, p in self.model.named_parameters() if p.requires_grad)
        self.buffers = _cpu_copy((n, b) for n, b in self.model.named_buffers() if b.is_floating_point())

    def on_train_end(self, state: TrainState) -> None:
        if state.failed or state.cancelled or not self.initial:
            return
        with torch.no_grad():
            parameters = [(n, p) for n, p in self.model.named_parameters() if n in self.initial]
            for name, tensor in parameters:
                self._interpolate(tensor, self.initial[name])
            buffers = [
                (n, b) for n, b in self.model.named_buffers() if n in self.buffers and not _same(b, self.buffers[n])
            ]
            for name, tensor in buffers:
                self._interpolate(tensor, self.buffers[name])
        self.log(
            f"WiSE-FT: weights interpolated with alpha {self.alpha} "
            f"({len(parameters)} parameter and {len(buffers)} buffer tensors)"
        )
        self.initial, self.buffers = {}, {}

    def _interpolate(self, tensor: torch.Tensor, initial: torch.Tensor) -> None:
        initial = initial.to(tensor.device, tensor.dtype)
        tensor.copy_((1 - self.alpha) * initial + self.alpha * tensor)


def _cpu_copy(named) -> dict[str, torch.Tensor]:
    return {name: tensor.detach().to("cpu", copy=True) for name, tensor in named}


def _same(tensor: torch.Tensor, initial: torch.Tensor) -> bool:
    return torch.equal(tensor.detach().cpu(), initial)
