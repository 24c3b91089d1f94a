"""Vectors: an MLP over pre-computed embeddings (random init; it is meant to be trained)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from finetuner_core.models.base import EmbeddingModel
from finetuner_core.models.card_text import SAFETENSORS_USAGE
from finetuner_core.models.families import register_family
from finetuner_core.models.onnx_export import MODEL_FILE, export_tensor_model
from finetuner_protocol.model_options import ModelOptions


@register_family
class MLPEmbeddingModel(EmbeddingModel):
    family = "mlp"
    modality = "vector"

    def __init__(self, name: str, options: ModelOptions):
        super().__init__(name, options)
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
    def create(cls, name: str, options: ModelOptions, pretrained: bool = True) -> MLPEmbeddingModel:
        """Random init either way: an MLP has no pretrained weights."""
        return cls(name, options)

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

    def export_onnx(self, directory: Path, examples: list[Any] | None = None) -> list[Path]:
        """``model.onnx``, input ``vectors`` ``# (batch, input_dim)``."""
        return [export_tensor_model(self, [[0.0] * self.options.input_dim] * 2, "vectors", directory / MODEL_FILE)]

    @classmethod
    def card_usage(cls) -> str:
        return SAFETENSORS_USAGE
