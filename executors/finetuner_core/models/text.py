"""Text: a sentence-transformers chain (transformer -> pooling -> [dense] -> [normalise]), saved natively.

Any sentence-transformers folder or Hugging Face encoder folder works (a plain encoder gets mean pooling).
The head options become sentence-transformers modules, so the saved folder loads with
``SentenceTransformer(path)`` as it is.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from sentence_transformers import SentenceTransformer
from sentence_transformers.sentence_transformer.modules import Dense, Normalize, Pooling
from torch import nn

from finetuner_core.models.base import EmbeddingModel, _to_device, pick_device
from finetuner_core.models.options import ModelOptions
from finetuner_core.models.pooling import TEXT_POOLING

FAMILY = "sentence-transformers"


class TextEmbeddingModel(EmbeddingModel):
    modality = "text"

    def __init__(self, st: SentenceTransformer, name: str, options: ModelOptions):
        super().__init__(name, FAMILY, options)
        self.st = st

    @classmethod
    def build(cls, name: str, path: Path, options: ModelOptions, device: str = "auto") -> TextEmbeddingModel:
        if options.pooling is not None and options.pooling not in TEXT_POOLING:
            raise ValueError(f"text pooling must be one of {', '.join(TEXT_POOLING)}, got {options.pooling!r}")
        st = SentenceTransformer(str(path), device="cpu", local_files_only=True)
        model = cls(SentenceTransformer(modules=_chain(st, options), device="cpu"), name, options)
        model.apply_freeze(options.freeze)
        return model.to(pick_device(device))

    @classmethod
    def load(cls, directory: Path, name: str, options: ModelOptions, device: str = "auto") -> TextEmbeddingModel:
        st = SentenceTransformer(str(directory), device="cpu", local_files_only=True)
        return cls(st, name, options).to(pick_device(device))

    def preprocess(self, inputs: list[Any]) -> dict[str, Any]:
        bad = next((i for i, text in enumerate(inputs) if not isinstance(text, str)), None)
        if bad is not None:
            raise TypeError(f"item {bad}: a text model takes strings, got {type(inputs[bad]).__name__}")
        return self.st.preprocess(inputs)

    def embed(self, inputs: list[Any]) -> torch.Tensor:
        """Embeddings with gradients. ``# (batch, dim)``; normalised by the chain's Normalize module."""
        return self.st(_to_device(self.preprocess(list(inputs)), self.device))["sentence_embedding"]

    @property
    def feature_dim(self) -> int:
        return self.st[0].get_embedding_dimension()

    @property
    def dim(self) -> int:
        return self.st.get_embedding_dimension()

    def backbone_module(self) -> nn.Module:
        return self.st[0]

    def save_weights(self, directory: Path) -> None:
        self.st.save(str(directory))


def _chain(st: SentenceTransformer, options: ModelOptions) -> list[nn.Module]:
    """The folder's modules with the requested pooling, projection and normalisation."""
    transformer, *head = list(st)
    head = [module for module in head if not isinstance(module, Normalize)]
    if options.pooling is not None:
        head = [Pooling(transformer.get_embedding_dimension(), pooling_mode=options.pooling)] + [
            module for module in head if not isinstance(module, Pooling)
        ]
    if not any(isinstance(module, Pooling) for module in head):
        head.insert(0, Pooling(transformer.get_embedding_dimension(), pooling_mode="mean"))
    if options.output_dim:
        current = SentenceTransformer(modules=[transformer, *head], device="cpu").get_embedding_dimension()
        head.append(Dense(current, options.output_dim, activation_function=nn.Identity()))
    if options.normalize:
        head.append(Normalize())
    return [transformer, *head]
