"""A request's fit configuration as the service reads it: parsed whole, its model and weights file from allowed
places only, an earlier run's model only the requesting user's."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from finetuner_core.config import SERVICE_FIELDS, ConfigError, FitConfig, parse_fit_config
from finetuner_core.models.describe import modality_of
from finetuner_core.models.resolve import StoredModels, resolve_model
from finetuner_core.runs.continuation import continue_from, is_run_source
from finetuner_core.runs.store import RunStore
from finetuner_protocol.backbones import check_model_source, expected_modality
from finetuner_protocol.ids import is_run_id
from finetuner_protocol.settings import validate_settings


def fit_config(
    raw: dict[str, Any], model_roots: Iterable[Path], runs: RunStore | None = None, owner: str | None = None
) -> FitConfig:
    """A request's fit configuration (ConfigError naming each bad field), its model and weights file from allowed
    places only (``finetuner_protocol.backbones.check_model_source``).

    A model that is a run id (``runs`` given) is that run's artifact, when ``owner`` (None: an admin) may use it
    (``runs.continuation.continue_from``: the config gets the run's modality, options and ``model_source``)."""
    for name in SERVICE_FIELDS:
        if isinstance(raw, dict) and raw.get(name) is not None:
            raise ConfigError(f"invalid fit configuration:\n  {name}: set by the trainer, not by a request")
    if runs is not None and isinstance(raw, dict) and is_run_id(raw.get("model")):
        return continue_from(raw, runs, owner)
    config = parse_fit_config(raw)
    check_model_source(config.model, config.model_options.weights, model_roots)
    return config


def with_resolved_model(
    config: FitConfig,
    roots: Iterable[Path] | None = None,
    allow_download: bool | None = None,
    store: StoredModels | None = None,
) -> FitConfig:
    """``config`` with its model resolved (``models.resolve``; ModelNotAvailableError, one line saying what to do,
    when it is nowhere here and may not be downloaded): the source recorded in ``model_source`` (name, id, kind,
    family; the run adds the revision once its model is built) and ``model_modality`` set from the family when the
    name alone does not say it (a request's own value must agree). A run's artifact keeps what :func:`fit_config`
    gave it."""
    if is_run_source(config.model_source):
        return config
    options = config.model_options
    source = resolve_model(config.model, options, list(roots or []), allow_download, False, store)
    update: dict[str, Any] = {"model_source": source.record()}
    if expected_modality(config.model) is None:  # only the resolver knows: what a request says is checked against it
        resolved = modality_of(source)  # a model still on the Hub: its Hub metadata says
        if config.model_modality is not None and resolved is not None and config.model_modality != resolved:
            raise ConfigError(
                f"invalid fit configuration:\n  model_modality: {config.model!r} takes {resolved}, "
                f"not {config.model_modality}"
            )
        update["model_modality"] = resolved
    return validate_settings(FitConfig, {**config.model_dump(mode="json"), **update})  # checked again, whole


def describe_run(run_id: str, runs: RunStore, owner: str | None) -> dict[str, Any]:
    """``/models/describe``'s row for an earlier run's model (``answers.ModelDescription``): ``where`` is ``run``
    when ``owner`` may continue from it, else ``not found`` with the reason (another user's run reads as unknown)."""
    try:
        source = continue_from({"model": run_id}, runs, owner).model_source
    except (ConfigError, LookupError) as exc:
        return {"name": run_id, "where": "not found", "detail": str(exc)}
    return {
        "name": run_id,
        "family": source["family"],
        "modality": source["modality"],
        "where": "run",
        "revision": source["revision"],
    }
