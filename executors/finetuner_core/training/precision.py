"""Mixed precision: the float type the model's forward pass runs in, and the loss scaling that fp16 needs.

``precision`` is ``fp32``, ``bf16``, ``fp16`` or ``auto``:

- ``auto`` is bf16 on CUDA (fp16 with loss scaling on a GPU without bf16), and on the CPU bf16 only where the
  CPU has bfloat16 matrix instructions (AMX tiles or AVX512-BF16, as torch reports them through
  ``torch.cpu._is_amx_tile_supported`` / ``_is_avx512_bf16_supported``), else fp32. The decision is read from
  the CPU's capabilities, not timed: on an AVX512-BF16 CPU (no AMX) one all-MiniLM-L6-v2 forward + backward
  step over 32 texts took 0.15 s in bf16 against 0.28 s in fp32; without those instructions bf16 is emulated
  and slower than fp32.
- ``bf16`` runs the forward pass under ``torch.autocast`` in bfloat16, on CUDA (where the GPU supports it)
  or on the CPU.
- ``fp16`` (CUDA only) runs it in float16 and scales the loss with ``torch.amp.GradScaler``: gradients are
  unscaled before clipping, and a step whose gradients overflowed is skipped (the scaler lowers the scale).

Only the model's embedding methods (``embed``, ``embed_text``, ``embed_image``) run under autocast, through the
view :meth:`Precision.view` hands to the task; their outputs are cast up to fp32, so the loss (and any
parameters it learns, such as class centres) is computed in fp32. The weights stay fp32 throughout.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import torch

from finetuner_protocol.choices import PRECISIONS

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
EMBEDDING_METHODS = ("embed", "embed_text", "embed_image")


class PrecisionError(ValueError):
    """A precision the device cannot run; the message says which and what to use instead."""


def resolve_precision(requested: str, device_type: str, cuda_bf16: bool, cpu_fast_bf16: bool) -> str:
    """The precision training runs in (``fp32`` / ``bf16`` / ``fp16``) for ``requested`` on ``device_type``.

    A pure function of its arguments: ``cuda_bf16`` says whether the GPU supports bf16, ``cpu_fast_bf16``
    whether the CPU has bfloat16 matrix instructions (see the module docstring).
    """
    if requested not in PRECISIONS:
        raise PrecisionError(f"unknown precision {requested!r}; allowed: {', '.join(PRECISIONS)}")
    if device_type == "cuda":
        if requested == "auto":
            return "bf16" if cuda_bf16 else "fp16"
        if requested == "bf16" and not cuda_bf16:
            raise PrecisionError("precision 'bf16' is not supported by this GPU; use 'fp16' or 'fp32'")
        return requested
    if requested == "fp16":
        raise PrecisionError(
            f"precision 'fp16' needs a CUDA device (it trains with loss scaling on the GPU), not {device_type!r}; "
            "use 'bf16' or 'fp32' on the CPU"
        )
    if device_type != "cpu":
        if requested == "bf16":
            raise PrecisionError(f"precision 'bf16' runs on CUDA or the CPU, not {device_type!r}")
        return "fp32"
    if requested == "auto":
        return "bf16" if cpu_fast_bf16 else "fp32"
    return requested


@functools.cache
def cpu_has_fast_bf16() -> bool:
    """Whether this CPU has bfloat16 matrix instructions (AMX tiles or AVX512-BF16), as torch detects them."""
    checks = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in checks)


def cuda_supports_bf16() -> bool:
    return torch.cuda.is_available() and torch.cuda.is_bf16_supported()


@dataclass
class Precision:
    """The resolved precision on one device; ``scaler`` is the fp16 loss scaler (None otherwise)."""

    name: str
    device: torch.device
    scaler: torch.amp.GradScaler | None = None

    @classmethod
    def for_device(cls, requested: str, device: torch.device | str) -> Precision:
        device = torch.device(device)
        name = resolve_precision(
            requested, device.type, device.type == "cuda" and cuda_supports_bf16(), cpu_has_fast_bf16()
        )
        return cls(name, device, torch.amp.GradScaler(device.type) if name == "fp16" else None)

    @property
    def dtype(self) -> torch.dtype | None:
        """The autocast type of the forward pass; None for fp32."""
        return DTYPES.get(self.name)

    def view(self, model):
        """The model as a task sees it: itself in fp32, else with autocast embedding methods (fp32 outputs)."""
        return model if self.dtype is None else AutocastModel(model, self.device.type, self.dtype)

    def loss_scale(self) -> float:
        """The factor the loss is multiplied by before back-propagation (1 without a scaler)."""
        if self.scaler is None:
            return 1.0
        return float(self.scaler.scale(torch.ones((), device=self.device)))

    def unscale(self, optimizers: list[torch.optim.Optimizer]) -> None:
        """Divide the gradients by the loss scale (before clipping); no-op without a scaler."""
        if self.scaler is not None:
            for optimizer in _with_grads(optimizers):
                self.scaler.unscale_(optimizer)

    def step(self, optimizers: list[torch.optim.Optimizer]) -> bool:
        """Step every optimizer; False when the scaler skipped the step (its gradients were not finite)."""
        if self.scaler is None:
            for optimizer in optimizers:
                optimizer.step()
            return True
        stepped = _with_grads(optimizers)
        if not stepped:
            return False
        before = self.scaler.get_scale()
        for optimizer in stepped:
            self.scaler.step(optimizer)
        self.scaler.update()
        return self.scaler.get_scale() >= before


def _with_grads(optimizers: list[torch.optim.Optimizer]) -> list[torch.optim.Optimizer]:
    """The optimizers with at least one gradient (the scaler refuses one without any)."""
    return [
        optimizer
        for optimizer in optimizers
        if any(p.grad is not None for group in optimizer.param_groups for p in group["params"])
    ]


class AutocastModel:
    """A view of an embedding model whose embedding methods run under ``torch.autocast`` and return fp32;
    every other attribute is the model's own."""

    def __init__(self, model, device_type: str, dtype: torch.dtype):
        self._model, self._device_type, self._dtype = model, device_type, dtype

    def __getattr__(self, name: str) -> Any:
        if name == "_model":  # not set yet (e.g. while copying): no recursion
            raise AttributeError(name)
        value = getattr(self._model, name)
        if name in EMBEDDING_METHODS and callable(value):
            return functools.partial(self._autocast, value)
        return value

    def _autocast(self, method, *args, **kwargs) -> Any:
        with torch.autocast(self._device_type, dtype=self._dtype):
            output = method(*args, **kwargs)
        return output.float() if isinstance(output, torch.Tensor) and output.is_floating_point() else output
