"""A sentence-transformers model as an embedding model: texts in, L2-normalised vectors out."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from sentence_transformers import SentenceTransformer

from finetuner_core.models.registry import resolve_model_path


def pick_device(device: str = "auto") -> str:
    """``auto`` means CUDA when present, else CPU."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


class TextEmbeddingModel:
    """Wraps a :class:`SentenceTransformer` (backbone -> pooling -> ...); saves natively."""

    modality = "text"

    def __init__(self, model: SentenceTransformer):
        self.model = model

    @classmethod
    def load(cls, name_or_path: str, device: str = "auto") -> TextEmbeddingModel:
        """Load a registered backbone or a local sentence-transformers / Hugging Face folder, offline."""
        path = resolve_model_path(name_or_path)
        model = SentenceTransformer(str(path), device=pick_device(device), local_files_only=True)
        return cls(model)

    @property
    def module(self) -> torch.nn.Module:
        """The trainable torch module."""
        return self.model

    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def dim(self) -> int:
        return self.model.get_embedding_dimension()

    def embed(self, texts: list[str]) -> torch.Tensor:
        """Embeddings with gradients, for training.  # (batch, dim), L2-normalised"""
        features = self.model.preprocess(texts)
        features = {k: v.to(self.device) if isinstance(v, torch.Tensor) else v for k, v in features.items()}
        embeddings = self.model(features)["sentence_embedding"]
        return torch.nn.functional.normalize(embeddings, dim=-1)

    def encode(self, texts: list[str], batch_size: int = 128) -> np.ndarray:
        """Embeddings without gradients, for search.  # (n, dim) float32, L2-normalised"""
        return self.model.encode(
            list(texts), batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True
        ).astype(np.float32)

    def save(self, path: str | Path) -> None:
        """Write a folder that ``SentenceTransformer(path)`` loads as it is."""
        self.model.save(str(path))
