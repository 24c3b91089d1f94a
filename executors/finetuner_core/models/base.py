"""The embedding model every family builds: inputs -> preprocessing -> backbone -> pooling -> projection -> L2.

A family subclass says how to preprocess its inputs, how its backbone turns a batch into features, and how its
weights are saved. Everything else (embedding, encoding in batches, the config that rebuilds it) is here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import safetensors.torch
import torch
from torch import nn

from finetuner_core.models.freeze import freeze
from finetuner_protocol.model_options import ModelOptions

CONFIG_FILE = "finetuner.json"
WEIGHTS_FILE = "model.safetensors"


def pick_device(device: str = "auto") -> str:
    """``auto`` means CUDA when present, else CPU."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


class EmbeddingModel(nn.Module):
    """Base class: subclasses set ``modality`` and implement ``preprocess``, ``features`` and ``feature_dim``."""

    modality = "text"

    def __init__(self, name: str, family: str, options: ModelOptions):
        super().__init__()
        self.name = name
        self.family = family
        self.options = options
        self.projection: nn.Module = nn.Identity()

    # --- what a family provides -------------------------------------------------------------------------
    def preprocess(self, inputs: list[Any]) -> Any:
        """Turn raw inputs (texts, images, vectors) into a batch for :meth:`features`."""
        raise NotImplementedError

    def features(self, batch: Any) -> torch.Tensor:
        """Backbone + pooling. ``# (batch, feature_dim)``"""
        raise NotImplementedError

    @property
    def feature_dim(self) -> int:
        raise NotImplementedError

    def backbone_module(self) -> nn.Module:
        """The part that ``freeze`` acts on."""
        raise NotImplementedError

    def save_weights(self, directory: Path) -> None:
        """The state dict as ``model.safetensors`` (families with a native format override this)."""
        state = {k: v.contiguous() for k, v in self.state_dict().items()}
        safetensors.torch.save_file(state, str(directory / WEIGHTS_FILE))

    def load_weights(self, directory: Path) -> None:
        self.load_state_dict(safetensors.torch.load_file(str(directory / WEIGHTS_FILE)))

    # --- shared -------------------------------------------------------------------------------------------
    def add_head(self) -> None:
        """Projection to ``output_dim`` (when set); then freeze what the options say."""
        if self.options.output_dim:
            self.projection = nn.Linear(self.feature_dim, self.options.output_dim)
        self.apply_freeze(self.options.freeze)

    def apply_freeze(self, groups: bool | list[str]) -> int:
        """Freeze the backbone (or its named groups); the projection stays trainable. Safe to call again."""
        count = freeze(self.backbone_module(), groups)
        for parameter in self.projection.parameters():
            parameter.requires_grad_(True)
        return count

    def train(self, mode: bool = True) -> EmbeddingModel:
        """Training mode, with BatchNorm layers kept in eval mode unless ``freeze_batchnorm=False``."""
        super().train(mode)
        if mode and self.options.freeze_batchnorm:
            for module in self.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eval()
        return self

    @property
    def dim(self) -> int:
        return self.options.output_dim or self.feature_dim

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def embed(self, inputs: list[Any]) -> torch.Tensor:
        """Embeddings with gradients, for training. ``# (batch, dim)``"""
        embeddings = self.projection(self.features(_to_device(self.preprocess(list(inputs)), self.device)))
        return nn.functional.normalize(embeddings, dim=-1) if self.options.normalize else embeddings

    @torch.no_grad()
    def encode(self, inputs: list[Any], batch_size: int = 64) -> np.ndarray:
        """Embeddings without gradients, in batches. ``# (n, dim)`` float32"""
        was_training = self.training
        self.eval()
        parts = [
            self.embed(inputs[i : i + batch_size]).float().cpu().numpy() for i in range(0, len(inputs), batch_size)
        ]
        self.train(was_training)
        return np.concatenate(parts) if parts else np.zeros((0, self.dim), np.float32)

    def config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "family": self.family,
            "modality": self.modality,
            "dim": self.dim,
            "options": self.options.model_dump(mode="json"),
        }

    def save(self, directory: str | Path) -> Path:
        """Write the weights (in the family's native format) and ``finetuner.json``, which rebuilds the model."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.save_weights(directory)
        (directory / CONFIG_FILE).write_text(json.dumps(self.config(), indent=2), encoding="utf-8")
        return directory


def _to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device)
    if isinstance(batch, dict):
        return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
    return batch
