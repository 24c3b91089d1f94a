"""An earlier run as the model of a new one: a fit whose ``model`` is a run id (Finetuner's ``model_artifact``)
starts from that run's artifact.

Only a FINISHED run of the user who asks (an admin may name any user's) with its artifact: another user's run is
refused exactly like a run that does not exist, a run that has not finished with its status. The artifact's
``finetuner.json`` gives the family and the modality (the data the new run takes) and the options it was built
with.

Model options: a continued run keeps the earlier run's. Of the options the new fit sets (pydantic's
``model_fields_set``, what a request names):

- training options apply to the loaded model: ``freeze``, ``freeze_batchnorm`` and CLIP's tower locks;
- ``output_dim`` other than the size of the run's embeddings adds a new projection to that size on top of them
  (text models, whose saved chain holds it); the same size changes nothing;
- the options that make the architecture (``weights``, ``pretrained``, ``pooling``, ``normalize``,
  ``select_model``, ``input_dim``, ``hidden_dims``, ``image_size``) must be the run's: refused otherwise.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from finetuner_core.config import FitConfig, parse_fit_config
from finetuner_core.models.base import CONFIG_FILE, EmbeddingModel, pick_device
from finetuner_core.models.build import load_model
from finetuner_core.models.families import get_family
from finetuner_core.runs.artifact import MANIFEST, sha256
from finetuner_core.runs.store import RunNotFoundError, RunStore
from finetuner_protocol.ids import is_run_id
from finetuner_protocol.model_options import LOCK_OPTIONS, ModelOptions
from finetuner_protocol.runs import RunStatus
from finetuner_protocol.settings import ConfigError

RUN = "run"  # the kind of a model source that is an earlier run's artifact
TRAINING_OPTIONS = ("freeze", "freeze_batchnorm", *LOCK_OPTIONS)
ARTIFACT_FOLDER = "model"


def is_run_source(source: dict[str, Any] | None) -> bool:
    return bool(source) and source.get("kind") == RUN


def continue_from(raw: dict[str, Any], store: RunStore, owner: str | None) -> FitConfig:
    """The fit configuration ``raw``, whose model is a run id, as a run continued from that run: its
    ``model_source`` (kind ``run``), its ``model_modality`` and its model options (see the module's docstring).
    ``owner``: the user who asks (None: an admin, any user's run). :class:`ConfigError` in one line when the run
    cannot be continued."""
    run_id = raw["model"]
    saved = _saved_model(store, run_id, owner)
    config = parse_fit_config({**raw, "model_modality": saved["modality"]})
    options = continued_options(run_id, saved, config.model_options)
    base = saved.get("source") or None
    if is_run_source(base):
        base = base.get("base")
    source = {
        "name": run_id,
        "id": run_id,
        "kind": RUN,
        "family": saved["family"],
        "modality": saved["modality"],
        "revision": "sha256:" + sha256(store.artifact_dir(run_id) / MANIFEST),
        "base": base,
    }
    update = {"model_options": options.model_dump(mode="json"), "model_source": source}
    return parse_fit_config({**config.model_dump(mode="json"), **update})


def continued_options(run_id: str, saved: dict[str, Any], given: ModelOptions) -> ModelOptions:
    """The options of a run continued from ``run_id`` (``saved``: its artifact's ``finetuner.json``): the run's,
    with the training options ``given`` sets and a new ``output_dim``; ConfigError naming an option that cannot
    apply to the saved model."""
    kept = ModelOptions.model_validate(saved["options"])
    update: dict[str, Any] = {}
    for name in sorted(given.model_fields_set):
        value, before = getattr(given, name), getattr(kept, name)
        if name in TRAINING_OPTIONS:
            update[name] = value
        elif name == "output_dim":
            if value is None or value == saved["dim"]:
                continue
            if not get_family(saved["family"]).adds_projection:
                raise _refused(
                    name,
                    f"run {run_id}'s {saved['family']} model gives {saved['dim']}-d embeddings; a new projection "
                    "is added to text models only: fit from the base model for another size",
                )
            update[name] = value
        elif value != before:
            raise _refused(
                name,
                f"run {run_id}'s model was built with {name}={before!r}; a continued run keeps its architecture "
                f"(set only {', '.join(TRAINING_OPTIONS)} or output_dim)",
            )
    return ModelOptions.model_validate({**kept.model_dump(mode="json"), **update})


def artifact_folder(run_folder: Path, run_id: str) -> Path:
    """The artifact of run ``run_id``, a run beside the one in ``run_folder`` (both in one runs folder)."""
    folder = Path(run_folder).parent / run_id / ARTIFACT_FOLDER
    if not (folder / CONFIG_FILE).is_file():
        raise FileNotFoundError(f"run {run_id}'s model is gone (the run was deleted): nothing to continue from")
    return folder


def load_continued(folder: Path, config: FitConfig, device: str = "auto") -> EmbeddingModel:
    """The saved model in ``folder`` made ready to train as ``config`` says (options from :func:`continue_from`):
    a new projection where ``output_dim`` asks for one, the training options applied; its source ``config``'s."""
    model = load_model(folder, "cpu")
    options = config.model_options
    if options.output_dim and options.output_dim != model.dim:
        model.add_projection(options.output_dim)
    model.options = options
    model.apply_freeze(options.freeze)
    model.source = config.model_source
    return model.to(pick_device(device))


def _saved_model(store: RunStore, run_id: str, owner: str | None) -> dict[str, Any]:
    """The ``finetuner.json`` of run ``run_id``'s artifact, when the run is ``owner``'s, FINISHED, and saved."""
    try:
        status = store.status(store.require(run_id, owner))["status"] if is_run_id(run_id) else None
    except RunNotFoundError:
        status = None
    if status is None:
        raise ConfigError(f"model: run {run_id!r} not found")
    if status != RunStatus.FINISHED:
        raise ConfigError(f"model: run {run_id} is {status}; only a FINISHED run's model can be trained further")
    artifact = store.artifact_dir(run_id)
    try:
        saved = json.loads((artifact / CONFIG_FILE).read_text("utf-8"))
        (artifact / MANIFEST).stat()
    except (OSError, ValueError):
        raise ConfigError(f"model: run {run_id} has no saved model to continue from") from None
    return saved


def _refused(option: str, reason: str) -> ConfigError:
    return ConfigError(f"model_options.{option}: {reason}")
