"""Build a model by name (zero-shot) or load a saved one; the one entry point for every family.

The resolver (``models.resolve``) says where a name's weights come from (packaged, a folder, the Hugging Face
cache, the Hub) and which family builds it; the family table (``models.families``) says how. The model keeps the
resolved source (``model.source``), which its ``finetuner.json`` records.
"""

from __future__ import annotations

import json
from pathlib import Path

from finetuner_core.models.base import CONFIG_FILE, EmbeddingModel, pick_device
from finetuner_core.models.families import get_family
from finetuner_core.models.hub import Progress
from finetuner_core.models.resolve import CACHE, HUB, STORE, StoredModels, fetch, resolve_model
from finetuner_protocol.backbones import BACKBONES, ModelNotAvailableError, canonical
from finetuner_protocol.model_options import ModelOptions


def build_model(
    name: str,
    options: ModelOptions | dict | None = None,
    device: str = "auto",
    store: StoredModels | None = None,
    progress: Progress | None = None,
) -> EmbeddingModel:
    """The embedding model for ``name`` (registered, a Finetuner model name, ``timm/...``, ``openclip/...``, a
    model in ``store`` (the workspace's model store), a folder, or a Hugging Face id in the cache, or on the Hub
    where downloads are allowed; ``progress`` is told how far a download is, as ``Download`` log records)."""
    options = ModelOptions.model_validate(options or {})
    name = canonical(name)
    folder = Path(name).expanduser()
    if name not in BACKBONES and folder.is_dir() and (folder / CONFIG_FILE).exists():
        return load_model(folder, device)
    source = fetch(resolve_model(name, options, store=store), progress)
    if source.kind == STORE and (source.path / CONFIG_FILE).exists():  # a saved model, imported into the store
        model = load_model(source.path, device)
        model.source = source.record()
        return model
    try:
        family = get_family(source.family)
    except ValueError:
        raise ModelNotAvailableError(f"model {name!r} is a {source.family} model, which no family builds yet") from None
    if source.kind in (CACHE, HUB, STORE) and not family.builds_hub_ids:
        raise ModelNotAvailableError(
            f"model {name!r} is a {source.family} checkpoint; from a Hugging Face id only sentence-transformers and "
            "transformers text encoders are built so far"
        )
    model = family.create(str(source.path) if source.kind == STORE else name, options)
    model.name, model.source = name, source.record()
    return model.to(pick_device(device))


def load_model(directory: str | Path, device: str = "auto") -> EmbeddingModel:
    """A model saved with ``EmbeddingModel.save`` (a run's artifact), rebuilt from its ``finetuner.json``."""
    directory = Path(directory)
    config = json.loads((directory / CONFIG_FILE).read_text("utf-8"))
    model = get_family(config["family"]).load(directory, config)
    model.source = config.get("source")
    return model.to(pick_device(device))
