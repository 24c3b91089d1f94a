"""The embedding model every family builds: inputs -> preprocessing -> backbone -> pooling -> projection -> L2.

A family is a subclass of :class:`EmbeddingModel` (an abstract class, as sentence-transformers' ``Module``) that
owns everything particular to it: how a model is built from a name, how its inputs are preprocessed, how its
backbone turns a batch into features, how its weights are saved and loaded, how it is exported to ONNX, and what
the model card says about loading it. It names itself (``family``, the name ``finetuner.json`` records) and
registers itself in the family table (``models.families``). Everything else (embedding, encoding in batches, the
config that rebuilds it, freezing, the projection head) is here.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import safetensors.torch
import torch
from torch import nn

from finetuner_core.models.card_text import onnx_runtime_usage
from finetuner_core.models.freeze import freeze
from finetuner_protocol.model_options import ModelOptions

CONFIG_FILE = "finetuner.json"
WEIGHTS_FILE = "model.safetensors"


def pick_device(device: str = "auto") -> str:
    """``auto`` means CUDA when present, else CPU."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


class EmbeddingModel(ABC, nn.Module):
    """Base class of every family: a subclass sets ``family`` (and ``library``, ``modality``) and implements the
    abstract methods; what has a default here (saving and loading as ``model.safetensors``) it may override."""

    family: ClassVar[str]  # the key of the family table and the ``family`` of ``finetuner.json``
    library: ClassVar[str] = "pytorch"  # the library that loads a saved model (the model card's ``library_name``)
    builds_hub_ids: ClassVar[bool] = False  # builds a model from a Hugging Face id's folder (``models.resolve``)
    adds_projection: ClassVar[bool] = False  # a saved model of the family takes a new projection (add_projection)
    modality = "text"

    def __init__(self, name: str, options: ModelOptions):
        super().__init__()
        self.name = name
        self.options = options
        self.projection: nn.Module = nn.Identity()
        self.source: dict[str, Any] | None = None  # where the weights came from (``models.resolve``), when built

    # --- building and loading -----------------------------------------------------------------------------
    @classmethod
    @abstractmethod
    def create(cls, name: str, options: ModelOptions, pretrained: bool = True) -> EmbeddingModel:
        """The model ``name`` of this family, on the CPU. ``pretrained``: with its pretrained weights (packaged or
        ``options.weights``); ``False`` builds the architecture only, for saved weights to be loaded into."""

    @classmethod
    def load(cls, directory: Path, config: dict[str, Any]) -> EmbeddingModel:
        """A model saved with :meth:`save` into ``directory`` (``config``: its ``finetuner.json``), on the CPU."""
        options = ModelOptions.model_validate(config["options"]).model_copy(update={"pretrained": False})
        model = cls.create(config["name"], options, pretrained=False)
        model.load_weights(directory)
        return model

    def save_weights(self, directory: Path) -> None:
        """The state dict as ``model.safetensors`` (families with a native format override this)."""
        state = {k: v.contiguous() for k, v in self.state_dict().items()}
        safetensors.torch.save_file(state, str(directory / WEIGHTS_FILE))

    def load_weights(self, directory: Path) -> None:
        self.load_state_dict(safetensors.torch.load_file(str(directory / WEIGHTS_FILE)))

    # --- what a family computes ---------------------------------------------------------------------------
    @abstractmethod
    def preprocess(self, inputs: list[Any]) -> Any:
        """Turn raw inputs (texts, images, vectors) into a batch for :meth:`features`."""

    @abstractmethod
    def features(self, batch: Any) -> torch.Tensor:
        """Backbone + pooling. ``# (batch, feature_dim)``"""

    @property
    @abstractmethod
    def feature_dim(self) -> int:
        """The size of :meth:`features`."""

    @abstractmethod
    def backbone_module(self) -> nn.Module:
        """The part that ``freeze`` acts on."""

    @abstractmethod
    def export_onnx(self, directory: Path, examples: list[Any] | None = None) -> list[Path]:
        """Write the ONNX file(s) into ``directory`` (the model is on the CPU, in eval mode); their paths.
        ``examples``: raw inputs to trace with (images, for the families that take them), else the family's own."""

    # --- the model card -----------------------------------------------------------------------------------
    @classmethod
    @abstractmethod
    def card_usage(cls) -> str:
        """The model card's section on loading a saved model with the family's own library (Markdown)."""

    @classmethod
    def card_onnx_usage(cls, files: list[str]) -> str:
        """The model card's section on running ``files`` (the artifact's ONNX files) with ONNX Runtime."""
        return onnx_runtime_usage(files)

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
            **({"source": self.source} if self.source else {}),
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
