"""Build a model by name (zero-shot) or load a saved one; the one entry point for every family.

The backbone catalogue says which family builds a name (``backbone_family``); the family table
(``models.families``) says how.
"""

from __future__ import annotations

import json
from pathlib import Path

from finetuner_core.models.base import CONFIG_FILE, EmbeddingModel, pick_device
from finetuner_core.models.families import get_family
from finetuner_protocol.backbones import BACKBONES, backbone_family, canonical, check_available
from finetuner_protocol.model_options import ModelOptions


def build_model(name: str, options: ModelOptions | dict | None = None, device: str = "auto") -> EmbeddingModel:
    """The embedding model for ``name`` (registered, ``timm/...``, ``openclip/...`` or a folder), offline."""
    options = ModelOptions.model_validate(options or {})
    name = canonical(name)
    folder = Path(name).expanduser()
    if name not in BACKBONES and folder.is_dir():
        if (folder / CONFIG_FILE).exists():
            return load_model(folder, device)
    else:
        check_available(name, options.weights, options.pretrained)
    return get_family(backbone_family(name)).create(name, options).to(pick_device(device))


def load_model(directory: str | Path, device: str = "auto") -> EmbeddingModel:
    """A model saved with ``EmbeddingModel.save`` (a run's artifact), rebuilt from its ``finetuner.json``."""
    directory = Path(directory)
    config = json.loads((directory / CONFIG_FILE).read_text("utf-8"))
    return get_family(config["family"]).load(directory, config).to(pick_device(device))
