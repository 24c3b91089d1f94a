"""Embedding models: the family table (text, image, CLIP, MLP: one class each), building and loading."""

from finetuner_core.models.base import EmbeddingModel
from finetuner_core.models.build import build_model, load_model
from finetuner_core.models.families import FAMILIES, get_family, list_families
from finetuner_protocol.backbones import (
    BackboneSpec,
    ModelNotAvailableError,
    list_backbones,
)
from finetuner_protocol.model_options import ModelOptions

__all__ = [
    "FAMILIES",
    "BackboneSpec",
    "EmbeddingModel",
    "ModelNotAvailableError",
    "ModelOptions",
    "build_model",
    "get_family",
    "list_backbones",
    "list_families",
    "load_model",
]
