"""Embedding models: the backbone registry and the text embedding model."""

from finetuner_core.models.registry import (
    BackboneSpec,
    ModelNotAvailableError,
    list_backbones,
    resolve_model_path,
)
from finetuner_core.models.text import TextEmbeddingModel

__all__ = [
    "BackboneSpec",
    "ModelNotAvailableError",
    "TextEmbeddingModel",
    "list_backbones",
    "resolve_model_path",
]
