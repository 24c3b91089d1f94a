"""Vectors: an MLP over pre-computed embeddings (random init; it is meant to be trained)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from finetuner_core.models.base import EmbeddingModel, pick_device
from finetuner_protocol.model_options import ModelOptions


class MLPEmbeddingModel(EmbeddingModel):
    modality = "vector"

    def __init__(self, name: str, options: ModelOptions):
        super().__init__(name, "mlp", options)
        if not options.input_dim:
            raise ValueError("the MLP needs model_options={'input_dim': <size of the input vectors>}")
        sizes = [options.input_dim, *options.hidden_dims]
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(sizes, sizes[1:], strict=False)):
            layers += [nn.Linear(a, b)] + ([nn.ReLU()] if i < len(sizes) - 2 else [])
        self.backbone = nn.Sequential(*layers) if layers else nn.Identity()
        self._feature_dim = sizes[-1]
        self.add_head()

    @classmethod
    def build(cls, name: str, options: ModelOptions, device: str = "auto") -> MLPEmbeddingModel:
        return cls(name, options).to(pick_device(device))

    def preprocess(self, inputs: list[Any]) -> torch.Tensor:
        """Vectors -> ``# (batch, input_dim)`` float32"""
        rows = [np.asarray(value, dtype=np.float32).reshape(-1) for value in inputs]
        for i, row in enumerate(rows):
            if row.shape[0] != self.options.input_dim or not np.isfinite(row).all():
                raise ValueError(f"item {i}: expected {self.options.input_dim} finite numbers, got {row.shape[0]}")
        return torch.from_numpy(np.stack(rows))

    def features(self, batch: torch.Tensor) -> torch.Tensor:
        return self.backbone(batch)

    @property
    def feature_dim(self) -> int:
        return self._feature_dim

    def backbone_module(self) -> nn.Module:
        return self.backbone
