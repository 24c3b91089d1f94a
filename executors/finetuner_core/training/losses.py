"""Losses and miners, by name, wrapping pytorch-metric-learning.

Every label loss takes L2-normalised embeddings ``# (batch, dim)`` and integer class ids ``# (batch,)``,
and measures with cosine similarity; the pair loss (CLIPLoss, ``pairs=True``) takes image and text embeddings
``# (batch, dim)`` and the exponentiated logit scale. Options are checked against each entry's defaults, so a
typo names the options that exist.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from open_clip.loss import ClipLoss
from pytorch_metric_learning import distances, losses, miners


@dataclass(frozen=True)
class LossSpec:
    """A registered loss: how to build it, its options with defaults, and whether a miner feeds it."""

    name: str
    build: Callable[..., torch.nn.Module]
    defaults: dict[str, Any] = field(default_factory=dict)
    uses_miner: bool = False
    description: str = ""
    pairs: bool = False
    classes: bool = False


def _with_centres(loss_class) -> Callable[..., torch.nn.Module]:
    """A builder for a loss that learns one centre per class in the embedding space."""

    def build_loss(num_classes: int, embedding_size: int, margin: float, scale: float) -> torch.nn.Module:
        return loss_class(num_classes, embedding_size, margin=margin, scale=scale)

    return build_loss


def _cosine() -> distances.CosineSimilarity:
    return distances.CosineSimilarity()


LOSSES: dict[str, LossSpec] = {
    spec.name: spec
    for spec in [
        LossSpec(
            "TripletMarginLoss",
            lambda margin, triplets_per_anchor: losses.TripletMarginLoss(
                margin=margin, triplets_per_anchor=triplets_per_anchor, distance=_cosine()
            ),
            {"margin": 0.1, "triplets_per_anchor": "all"},
            uses_miner=True,
            description="(anchor, positive, negative) triplets from labels; cosine margin",
        ),
        LossSpec(
            "InfoNCELoss",
            lambda temperature: losses.NTXentLoss(temperature=temperature, distance=_cosine()),
            {"temperature": 0.05},
            description="in-batch negatives (multiple-negatives ranking); same-label items are positives",
        ),
        LossSpec(
            "ArcFaceLoss",
            _with_centres(losses.ArcFaceLoss),
            {"margin": 28.6, "scale": 64.0},
            description="additive angular margin over learned class centres (margin in degrees); own optimizer",
            classes=True,
        ),
        LossSpec(
            "CosFaceLoss",
            _with_centres(losses.CosFaceLoss),
            {"margin": 0.35, "scale": 64.0},
            description="additive cosine margin over learned class centres; own optimizer",
            classes=True,
        ),
        LossSpec(
            "CLIPLoss",
            lambda: ClipLoss(),
            {},
            description="text-image pairs: symmetric cross-entropy over the batch, learnable temperature",
            pairs=True,
        ),
        LossSpec(
            "SupConLoss",
            lambda temperature: losses.SupConLoss(temperature=temperature, distance=_cosine()),
            {"temperature": 0.1},
            description="supervised contrastive loss over all same-label pairs in the batch",
        ),
    ]
}

MINERS: dict[str, LossSpec] = {
    spec.name: spec
    for spec in [
        LossSpec(
            "TripletMarginMiner",
            lambda margin, type_of_triplets: miners.TripletMarginMiner(
                margin=margin, type_of_triplets=type_of_triplets, distance=_cosine()
            ),
            {"margin": 0.1, "type_of_triplets": "all"},
            description="triplets violating the margin: type_of_triplets = all | hard | semihard | easy",
        ),
        LossSpec(
            "BatchHardMiner",
            lambda: miners.BatchHardMiner(distance=_cosine()),
            {},
            description="for each anchor, its hardest positive and hardest negative in the batch",
        ),
    ]
}


def build(
    registry: dict[str, LossSpec],
    name: str,
    options: dict[str, Any] | None,
    num_classes: int = 2,
    embedding_size: int = 2,
) -> torch.nn.Module:
    """Build entry ``name`` of ``registry`` with ``options`` over its defaults.

    Losses with learned class centres (``classes=True``) also take the number of classes and the embedding size.
    """
    if name not in registry:
        raise ValueError(f"unknown name {name!r}; allowed: {', '.join(registry)}")
    spec = registry[name]
    unknown = set(options or {}) - set(spec.defaults)
    if unknown:
        allowed = ", ".join(spec.defaults) or "none"
        raise ValueError(f"{name} has no option(s) {', '.join(sorted(unknown))}; allowed: {allowed}")
    arguments = {**spec.defaults, **(options or {})}
    if spec.classes:
        arguments.update(num_classes=num_classes, embedding_size=embedding_size)
    return spec.build(**arguments)
