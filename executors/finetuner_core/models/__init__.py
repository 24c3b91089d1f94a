"""Embedding models: the backbone registry, the families (text, image, CLIP, MLP), building and loading."""

from finetuner_core.models.base import EmbeddingModel
from finetuner_core.models.build import build_model, load_model
from finetuner_protocol.backbones import (
    BackboneSpec,
    ModelNotAvailableError,
    check_available,
    list_backbones,
)
from finetuner_protocol.model_options import ModelOptions

__all__ = [
    "BackboneSpec",
    "EmbeddingModel",
    "ModelNotAvailableError",
    "ModelOptions",
    "build_model",
    "check_available",
    "list_backbones",
    "load_model",
]
