"""What a model name stands for and where its weights would come from now, without building or downloading it.

``/models/describe`` answers with these rows, and the trainer checks a fit's model (``fit_request``) before any
data is sent: an unknown or unavailable name is refused in one line that says what to do, and a name
only the service can place (a Hugging Face id, a stored model) gets its modality from what the resolver found.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from finetuner_core.models.families import get_family
from finetuner_core.models.hub import files_family, hub_endpoint
from finetuner_core.models.resolve import CACHE, FOLDER, HUB, LIBRARY, PACKAGED, ResolvedModel, resolve_model
from finetuner_protocol.backbones import (
    FOLDER_FAMILY,
    PARAMETERS,
    ModelNotAvailableError,
    ModelSourceError,
    canonical,
    check_model_source,
    did_you_mean,
    expected_modality,
    known_spec,
    list_aliases,
    list_backbones,
)
from finetuner_protocol.model_options import ModelOptions

# the resolver's kind -> the WHERE word users read (a library model: a weights file, or a random init)
_WHERE = {
    PACKAGED: "packaged",
    CACHE: "cached",
    FOLDER: "folder",
    HUB: "download needed",
    "store": "store",
    "run": "run",
}


def where(source: ResolvedModel) -> str:
    """Where ``source``'s weights would come from, as ``finetuner_protocol.backbones.WHERE`` says it."""
    if source.kind == LIBRARY:
        return "weights file" if source.path is not None else "random init"
    return _WHERE.get(source.kind, source.kind)


def modality_of(source: ResolvedModel) -> str | None:
    """What the resolved model takes: a saved artifact's own record, else its family's (a model still on the Hub:
    the family its Hub metadata names, :func:`hub_family`)."""
    if source.path is not None and (source.path / "finetuner.json").is_file():
        return json.loads((source.path / "finetuner.json").read_text("utf-8")).get("modality")
    family = source.family
    if source.kind == HUB and source.path is None and family == FOLDER_FAMILY and known_spec(source.id) is None:
        family = hub_family(source.id)  # a Hub id nothing here describes yet
    try:
        return get_family(family).modality
    except ValueError:  # a family no class builds
        return expected_modality(source.id)


def hub_family(model_id: str) -> str:
    """The family of a Hugging Face model not downloaded yet, from its Hub metadata (its files and model type,
    :func:`hub.files_family`); :class:`ModelNotAvailableError` when the Hub does not answer."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import RepositoryNotFoundError

    try:
        info = HfApi(endpoint=hub_endpoint()).model_info(model_id, revision="main")
    except RepositoryNotFoundError:
        raise ModelNotAvailableError(
            f"model {model_id!r}: no such model on the Hugging Face Hub ({hub_endpoint()}); check the name "
            f"(finetuner.describe_models() lists the registered ones){did_you_mean(model_id)}"
        ) from None
    except Exception as exc:  # noqa: BLE001 - whatever the Hub answered, the model cannot be placed
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise ModelNotAvailableError(f"model {model_id!r}: the Hugging Face Hub did not describe it: {reason}") from exc
    top = {sibling.rfilename for sibling in info.siblings or [] if "/" not in sibling.rfilename}
    return files_family(top, info.config or {})


def describe(name: str, options: ModelOptions | dict | None = None, **resolve: Any) -> dict[str, Any]:
    """One row of ``/models/describe`` (``answers.ModelDescription``) for ``name``; ``resolve``: the resolver's
    ``roots``, ``allow_download`` and ``store``."""
    spec = known_spec(name)
    model_id = canonical(name)
    row: dict[str, Any] = {
        "name": name,
        "stands_for": model_id if model_id != name else None,
        "family": spec.family if spec else None,
        "modality": spec.modality if spec else expected_modality(name),
        "output_dim": spec.output_dim if spec else None,
        "parameters": PARAMETERS.get(model_id),
    }
    try:
        if resolve.get("roots") is not None:  # a request's: paths only under the operator's roots
            check_model_source(name, ModelOptions.model_validate(options or {}).weights, resolve["roots"])
        source = resolve_model(name, options, **resolve)
    except ModelSourceError as exc:
        return {**row, "where": "not allowed", "detail": str(exc)}
    except ModelNotAvailableError as exc:
        return {**row, "where": "unavailable offline", "detail": str(exc)}
    row.update(family=source.family, modality=modality_of(source) or row["modality"], revision=source.revision)
    row["where"] = where(source)
    if row["output_dim"] is None and source.path is not None:
        row["output_dim"] = _folder_dim(source.path)
    return row


def describe_catalogue(**resolve: Any) -> list[dict[str, Any]]:
    """Every registered backbone and every Finetuner model name, each as :func:`describe` says."""
    names = [spec.name for spec in list_backbones()] + [alias.name for alias in list_aliases()]
    return [describe(name, **resolve) for name in names]


def _folder_dim(folder: Path) -> int | None:
    """The embedding size a sentence-transformers / Hugging Face folder gives, from its files (no model built)."""
    if not folder.is_dir():
        return None
    for config in sorted(folder.glob("*_Dense/config.json"), reverse=True) + [folder / "1_Pooling/config.json"]:
        try:
            data = json.loads(config.read_text("utf-8"))
        except (OSError, ValueError):
            continue
        dim = data.get("out_features") or data.get("word_embedding_dimension")
        if isinstance(dim, int):
            return dim
    try:
        data = json.loads((folder / "config.json").read_text("utf-8"))
    except (OSError, ValueError):
        return None
    dim = data.get("projection_dim") or data.get("hidden_size") or data.get("embed_dim")
    return dim if isinstance(dim, int) else None
