"""The optimizer and its parameter groups: one learning rate, or one per layer (layer-wise decay), and the head's.

Layer-wise learning-rate decay needs a notion of depth that holds for every family. A *layer* is the module
path of a parameter's name up to its last numeric component (a block of a ``Sequential`` or ``ModuleList``,
e.g. ``backbone.0.auto_model.encoder.layer.3``), or, for a name without one, its owning module (e.g.
``projection``). Layers are ordered by their first parameter in ``model.named_parameters()``, except that the
projection head, which every model applies last, comes last wherever it was registered; the last layer (next
to the output) has depth 0, the one before it depth 1, and so on. A layer at depth ``d`` trains with
``learning_rate * layer_lr_decay ** d``.

The projection head (parameters under ``projection.``) trains with ``head_learning_rate`` when that is set;
it then stays out of the depth count.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from finetuner_protocol.settings import FitSettings

HEAD_PREFIX = "projection."


def layer_of(name: str) -> str:
    """The layer a parameter name belongs to (see the module docstring)."""
    parts = name.split(".")[:-1]
    numeric = [i for i, part in enumerate(parts) if part.isdigit()]
    return ".".join(parts[: numeric[-1] + 1]) if numeric else ".".join(parts) or name


def parameter_groups(
    model: nn.Module, learning_rate: float, layer_lr_decay: float | None = None, head_learning_rate: float | None = None
) -> list[dict[str, Any]]:
    """Groups of trainable parameters with their learning rates (each group also names its ``layer``)."""
    named = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    head = [p for name, p in named if head_learning_rate is not None and name.startswith(HEAD_PREFIX)]
    body = [(name, p) for name, p in named if head_learning_rate is None or not name.startswith(HEAD_PREFIX)]
    groups = []
    if layer_lr_decay is None:
        if body:
            groups.append({"params": [p for _, p in body], "lr": learning_rate, "layer": "all"})
    else:
        layers: dict[str, list] = {}
        for name, p in sorted(body, key=lambda item: item[0].startswith(HEAD_PREFIX)):
            layers.setdefault(layer_of(name), []).append(p)
        for depth, (layer, params) in enumerate(reversed(list(layers.items()))):
            groups.insert(0, {"params": params, "lr": learning_rate * layer_lr_decay**depth, "layer": layer})
    if head:
        groups.append({"params": head, "lr": head_learning_rate, "layer": HEAD_PREFIX.rstrip(".")})
    return groups


def build_optimizer(model: nn.Module, config: FitSettings) -> torch.optim.Optimizer:
    """``config.optimizer`` over :func:`parameter_groups`, with ``config.optimizer_options``."""
    cls = getattr(torch.optim, config.optimizer)
    groups = parameter_groups(model, config.learning_rate, config.layer_lr_decay, config.head_learning_rate)
    if not groups:
        raise ValueError(
            "nothing to train: every parameter of the model is frozen (model_options freeze / lock_image / lock_text)"
        )
    try:
        return cls(groups, lr=config.learning_rate, **config.optimizer_options)
    except TypeError as exc:
        raise ValueError(f"optimizer_options do not fit {config.optimizer}: {exc}") from None
