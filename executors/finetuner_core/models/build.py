"""Build a model by name (zero-shot) or load a saved one; the one entry point for every family."""

from __future__ import annotations

import json
from pathlib import Path

from finetuner_core.models.base import CONFIG_FILE, EmbeddingModel, pick_device
from finetuner_core.models.clip import build_lit, build_open_clip
from finetuner_core.models.image import build_timm, build_torchvision, load_efficientnet_lite0
from finetuner_core.models.mlp import MLPEmbeddingModel
from finetuner_core.models.text import TextEmbeddingModel
from finetuner_protocol.backbones import (
    BACKBONES,
    DEFAULT_CLIP_MODEL,
    DEFAULT_IMAGE_MODEL,
    DEFAULT_TEXT_MODEL,
    canonical,
    check_available,
    efficientnet_lite0_path,
    minilm_path,
)
from finetuner_protocol.model_options import ModelOptions


def build_model(name: str, options: ModelOptions | dict | None = None, device: str = "auto") -> EmbeddingModel:
    """The embedding model for ``name`` (registered, ``timm/...``, ``openclip/...`` or a folder), offline."""
    options = ModelOptions.model_validate(options or {})
    name = canonical(name)
    folder = Path(name).expanduser()
    if name not in BACKBONES and folder.is_dir():
        return load_model(folder, device) if (folder / CONFIG_FILE).exists() else _text(name, folder, options, device)
    check_available(name, options.weights, options.pretrained)
    return _build(name, options, device, load=True)


def load_model(directory: str | Path, device: str = "auto") -> EmbeddingModel:
    """A model saved with ``EmbeddingModel.save`` (a run's artifact), rebuilt from its ``finetuner.json``."""
    directory = Path(directory)
    config = json.loads((directory / CONFIG_FILE).read_text("utf-8"))
    options = ModelOptions.model_validate(config["options"])
    if config["family"] == "sentence-transformers":
        return TextEmbeddingModel.load(directory, config["name"], options, device)
    model = _build(config["name"], options.model_copy(update={"pretrained": False}), "cpu", load=False)
    model.load_weights(directory)
    return model.to(pick_device(device))


def _build(name: str, options: ModelOptions, device: str, load: bool) -> EmbeddingModel:
    if name == DEFAULT_TEXT_MODEL:
        return _text(name, minilm_path(), options, device)
    if name == DEFAULT_IMAGE_MODEL:
        packaged = str(efficientnet_lite0_path()) if load else None
        return build_timm(name, "tf_efficientnet_lite0", options, device, packaged, load_efficientnet_lite0)
    if name == DEFAULT_CLIP_MODEL:
        return build_lit(name, options, device, load=load)
    if name == "mlp":
        return MLPEmbeddingModel.build(name, options, device)
    if name.startswith("timm/"):
        return build_timm(name, name.removeprefix("timm/"), options, device)
    if name.startswith("openclip/"):
        return build_open_clip(name, options, device, load=load)
    if BACKBONES.get(name) and BACKBONES[name].family == "torchvision":
        return build_torchvision(name, options, device)
    if Path(name).is_dir():
        return _text(name, Path(name), options, device)
    raise ValueError(f"no builder for {name!r}")


def _text(name: str, folder: Path, options: ModelOptions, device: str) -> TextEmbeddingModel:
    return TextEmbeddingModel.build(name, folder, options, device)
