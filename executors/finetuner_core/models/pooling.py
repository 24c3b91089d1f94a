"""Pooling of image feature maps into one vector per image."""

from __future__ import annotations

import torch
from torch import nn


class GeM(nn.Module):
    """Generalised mean pooling, ``(mean x^p)^(1/p)`` with a learnable ``p`` (``p=1`` is average pooling).

    ``# (batch, channels, h, w) -> (batch, channels)``
    """

    def __init__(self, p: float = 3.0, eps: float = 1e-6):
        super().__init__()
        self.p = nn.Parameter(torch.tensor(float(p)))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.clamp(min=self.eps).pow(self.p).mean(dim=(-2, -1)).pow(1.0 / self.p)


class AvgPool(nn.Module):
    """Average pooling. ``# (batch, channels, h, w) -> (batch, channels)``"""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(-2, -1))


IMAGE_POOLING = {"avg": AvgPool, "gem": GeM}
TEXT_POOLING = ("mean", "cls", "max")
