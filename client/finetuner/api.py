"""Finetuner's API: login, fit, runs, and local get_model / encode."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

from finetuner import datasets, evaluation
from finetuner.data import to_wire_docs
from finetuner.environment import HOST_VARIABLE, TOKEN_VARIABLE
from finetuner.errors import ConnectionFailedError, FinetunerError, NotLoggedInError, ServerError
from finetuner.run import Run
from finetuner.settings import settings_of
from finetuner.transport import Transport
from finetuner_protocol import endpoints
from finetuner_protocol.backbones import (
    DEFAULT_TEXT_MODEL,
    PARAMETERS,
    ModelNotAvailableError,
    ModelSourceError,
    check_name,
    list_aliases,
    list_backbones,
)
from finetuner_protocol.data.checks import shape
from finetuner_protocol.data.intake import parse_data, parse_fit_data
from finetuner_protocol.data.records import LabeledItem
from finetuner_protocol.ids import is_dataset_id, is_run_id
from finetuner_protocol.model_options import ModelOptions
from finetuner_protocol.runs import FINAL_STATUSES
from finetuner_protocol.settings import ConfigError, FitSettings, parse_settings

if TYPE_CHECKING:
    from types import ModuleType

    from finetuner_core.models import EmbeddingModel

INFERENCE = 'pip install "finetuner[inference]"'

UNSET: Any = object()
MODEL_ERRORS = (ModelNotAvailableError, ModelSourceError)  # the service's refusals of a model
_session: dict[str, Transport] = {}


def login(host: str | None = None, token: str | None = None, timeout_s: float = 10.0, verify: bool = True) -> None:
    """Connect to a Flow at ``host`` (``grpc://HOST:PORT``; default: $FINETUNER_HOST), check it answers and (unless
    ``verify=False``) that it knows the token (default: $FINETUNER_TOKEN): a wrong one fails here, with
    :class:`ServerError`."""
    host = host or os.environ.get(HOST_VARIABLE)
    if not host:
        raise NotLoggedInError(f"no Flow address: pass finetuner.login(host='grpc://HOST:PORT') or set {HOST_VARIABLE}")
    transport = Transport(host, token or os.environ.get(TOKEN_VARIABLE))
    if not transport.is_ready(timeout_s):
        raise ConnectionFailedError(
            f"no Flow answers at {host}; start one with `python -m finetuner_core.serve flow.yml`"
        )
    if verify:
        transport.result(endpoints.RUNS_LIST, limit=1)  # the trainer checks the token
    _session["transport"] = transport


def _transport() -> Transport:
    if "transport" not in _session:
        if os.environ.get(HOST_VARIABLE):
            login()
        else:
            raise NotLoggedInError(f"call finetuner.login(host=...) first, or set {HOST_VARIABLE}")
    return _session["transport"]


def fit(
    model: str | None = None,
    train_data: Any = None,
    eval_data: Any = None,
    *,
    loss: str = UNSET,
    epochs: int = UNSET,
    batch_size: int = UNSET,
    learning_rate: float = UNSET,
    num_items_per_class: int = UNSET,
    experiment_name: str | None = None,
    quiet: bool = False,
    model_artifact: str | None = None,
    **options: Any,
) -> Run:
    """Start a fine-tuning run and return it at once; training goes on in the Flow.

    ``model``: a backbone name (default all-MiniLM-L6-v2), or a run id: the run starts from that finished run's
    model (yours), keeping its model options unless new ones are given. ``model_artifact`` (Finetuner's keyword):
    the same, an earlier run's id (``run.artifact_id``).

    ``train_data`` / ``eval_data``: a dataset id (from ``upload_dataset``), a CSV file path (``text,label``,
    ``image,label`` or, for CLIP, ``image,text`` rows; image paths relative to the CSV), a DocList (``text``
    and/or an image field, with ``finetuner_label`` or ``tags["finetuner_label"]``), or a list of
    ``(content, label)`` / ``(text, image)`` tuples. Data that is not a dataset id yet is checked here and
    uploaded first (stored once, whatever the number of runs that use it).
    Model options (``output_dim``, ``freeze``, ``pooling``, ``select_model``, ``weights``, ``image_size`` ...)
    may be given by name or as ``model_options``. Any other :class:`FitConfig` field (``loss_options``, ``miner``,
    ``optimizer``, ``max_steps``, ``device``, ``csv_options``, ``eval_ks``, ``run_name`` ...) can be passed by
    name; unset fields keep their defaults. ``experiment_name`` groups runs (default: ``default``).
    """
    if train_data is None:
        raise ValueError("train_data is required")
    model = _model_or_artifact(model, model_artifact)
    named = dict(
        loss=loss,
        epochs=epochs,
        batch_size=batch_size,
        learning_rate=learning_rate,
        num_items_per_class=num_items_per_class,
    )
    config = settings_of(model, {**{k: v for k, v in named.items() if v is not UNSET}, **options})
    config = _check_in_service(config)  # the model resolved by the Flow first: what the data must hold
    train_data, eval_data = _readable_twice(train_data), _readable_twice(eval_data)
    _check_before_upload(train_data, eval_data, config)
    parameters = {"config": config.model_dump(mode="json"), "experiment": experiment_name}
    parameters["train_dataset"] = _dataset_id(train_data, config, "train", quiet)
    if eval_data is not None:
        parameters["eval_dataset"] = _dataset_id(eval_data, config, "eval", quiet)
    answer = _transport().result(endpoints.FIT, **{k: v for k, v in parameters.items() if v is not None})
    return Run(_transport(), answer["run_id"], config.run_name)


def _model_or_artifact(model: str | None, model_artifact: str | None) -> str:
    """The model a fit names: ``model``, or the run ``model_artifact`` names (the same when both are given)."""
    if model_artifact is None:
        return DEFAULT_TEXT_MODEL if model is None else model
    if not is_run_id(model_artifact):
        raise ConfigError(
            "invalid fit configuration:\n  model_artifact: an earlier run's id (run.artifact_id), "
            f"got {model_artifact!r}"
        )
    if model is not None and model != model_artifact:
        raise ConfigError(
            f"invalid fit configuration:\n  model_artifact: continues run {model_artifact}, but model names "
            f"{model!r}; give one of them (model=<run id> is the same as model_artifact)"
        )
    return model_artifact


def check_data(train_data: Any, eval_data: Any = None, model: str = DEFAULT_TEXT_MODEL, **options: Any):
    """Check data here, as ``fit`` with the same arguments would.

    A registered backbone, a Finetuner name or a local folder is placed by the catalogue here, without a Flow; any
    other name (a Hugging Face id, a stored model, a run) is resolved by the Flow (``finetuner.login`` or
    ``$FINETUNER_HOST``), which refuses a model it cannot use in one line saying what to do, or needs
    ``model_modality`` (what the model takes) without one. ``fit`` always has the Flow resolve its model first.
    Raises :class:`DataError` naming every bad row or document and why; else describes each split:
    ``{"train": {"items": 100, "shape": "text", "classes": 10}, ...}`` (``shape``: text, image, vector,
    text-image, query-doc or scored; ``classes`` for labeled items only).
    """
    config = _check_model(settings_of(model, dict(options)))
    docs = _split_docs({"train": train_data, "eval": eval_data}, config)
    return {split: _describe(records) for split, records in parse_fit_data(docs, config).items()}


def _check_model(config: FitSettings) -> FitSettings:
    """``config`` with what its model takes: from the catalogue where it places the name (a registered backbone, a
    Finetuner name, a local folder: no Flow needed), else from the Flow's resolution (:func:`_check_in_service`)
    when one is known; else refused in one line saying what to do."""
    if config.model_options.select_model is not None or config.whole_modality is not None:
        return config
    if "transport" in _session or os.environ.get(HOST_VARIABLE):
        return _check_in_service(config)
    check_name(config.model)
    raise ModelNotAvailableError(
        f"model {config.model!r} is not available offline: it is not a registered backbone, a Finetuner model "
        "name or a local folder, and only a Flow resolves other names (Hugging Face ids, stored models, runs): "
        "log in (finetuner login) and check again, or set model_modality"
    )


def _check_before_upload(train_data: Any, eval_data: Any, config: FitSettings) -> None:
    """Every check the Flow runs on data that is not a dataset id yet, before any of it is sent."""
    eval_data = None if _is_dataset_id(eval_data) else eval_data
    if not _is_dataset_id(train_data):
        parse_fit_data(_split_docs({"train": train_data, "eval": eval_data}, config), config)
    elif eval_data is not None:
        docs = _split_docs({"eval": eval_data}, config)
        parse_data(docs, config.modality, config.csv_options, 1, required=("eval",), model=config.model)


def _check_in_service(config: FitSettings) -> FitSettings:
    """The checks only the service can make, before any data is sent: the model resolved (where its weights come
    from, what it takes: ``model_modality``), the loss, miner, schedule and optimizer working with their options,
    the device and precision runnable by the trainer. Returns ``config`` with the model's modality; a refused
    setting is a :class:`ConfigError`, an unusable model a :class:`ModelNotAvailableError`, as when refused here."""
    try:
        checked = _transport().result(endpoints.CONFIG_CHECK, config=config.model_dump(mode="json"))["config"]
    except ServerError as exc:
        raise _as_local(exc) from None
    modality = checked.get("model_modality")
    if modality is None or config.model_modality is not None:
        return config
    return parse_settings({**config.model_dump(mode="json", exclude_unset=True), "model_modality": modality})


def _as_local(exc: ServerError) -> Exception:
    """The service's refusal of a setting or a model as the error the same refusal raises here."""
    kinds = {ConfigError.__name__: ConfigError, **{k.__name__: ModelNotAvailableError for k in MODEL_ERRORS}}
    return kinds[exc.kind](str(exc)) if exc.kind in kinds else exc


def _readable_twice(data: Any) -> Any:
    """Data read once to check it and once to upload it: an iterator becomes a list."""
    return list(data) if isinstance(data, Iterator) else data


def _split_docs(data: dict[str, Any], config: FitSettings) -> list:
    """The documents of each split's data (None: no such split)."""
    labeled = config.csv_options.is_labeled
    return [doc for split, value in data.items() for doc in to_wire_docs(value, split, config.modality, labeled)]


def _describe(records: list) -> dict[str, Any]:
    described = {"items": len(records), "shape": shape(records)}
    if isinstance(records[0], LabeledItem):
        described["classes"] = len({record.label for record in records})
    return described


def upload_dataset(data: Any, name: str | None = None, model: str = DEFAULT_TEXT_MODEL, quiet: bool = False, **options):
    """Check ``data`` here, upload it in batches (resuming an interrupted upload), and describe the stored
    dataset (``id``, ``items``, ``content_sha256`` ...). ``model`` and its options say what the data must hold."""
    config = _check_model(settings_of(model, dict(options)))
    return datasets.upload(_transport(), data, config, name or _default_name(data), quiet)


def list_datasets() -> list[dict[str, Any]]:
    return _transport().result(endpoints.DATASETS_LIST)["datasets"]


def delete_dataset(dataset_id: str) -> None:
    _transport().result(endpoints.DATASETS_DELETE, dataset_id=dataset_id)


def _is_dataset_id(data: Any) -> bool:
    return is_dataset_id(data) and not Path(data).exists()


def _dataset_id(data: Any, config: FitSettings, split: str, quiet: bool) -> str:
    if _is_dataset_id(data):
        return data
    return datasets.upload(_transport(), data, config, _default_name(data, split), quiet)["id"]


def _default_name(data: Any, split: str = "data") -> str:
    return Path(data).name if isinstance(data, str | Path) else f"{split} ({type(data).__name__})"


def get_run(run_id: str) -> Run:
    run = Run(_transport(), run_id)
    run.info()
    return run


def list_runs(
    experiment_name: str | None = None, status: str | None = None, page: int = 1, size: int = 50
) -> list[dict[str, Any]]:
    """Your runs, oldest first, with their status: page ``page`` (from 1) of ``size`` runs."""
    if page < 1 or size < 1:
        raise ValueError("page and size start at 1")
    parameters = {"experiment": experiment_name, "status": status, "offset": (page - 1) * size, "limit": size}
    return _transport().result(endpoints.RUNS_LIST, **{k: v for k, v in parameters.items() if v is not None})["runs"]


def delete_run(run_id: str) -> None:
    """Delete a run that has ended, with its logs, metrics and model."""
    _transport().result(endpoints.RUNS_DELETE, run_id=run_id)


def delete_runs(experiment_name: str | None = None) -> list[str]:
    """Delete every run that has ended (of one experiment, when named); the ids deleted."""
    deleted = []
    while True:
        ended = [r for r in list_runs(experiment_name, size=500) if r["status"] in FINAL_STATUSES]
        runs = [r for r in ended if r["run_id"] not in deleted]
        if not runs:
            return deleted
        for run in runs:
            delete_run(run["run_id"])
            deleted.append(run["run_id"])


def create_experiment(name: str) -> dict[str, Any]:
    return _transport().result(endpoints.EXPERIMENTS_CREATE, name=name)


def get_experiment(name: str) -> dict[str, Any]:
    return _transport().result(endpoints.EXPERIMENTS_GET, name=name)


def list_experiments() -> list[dict[str, Any]]:
    return _transport().result(endpoints.EXPERIMENTS_LIST)["experiments"]


def delete_experiment(name: str) -> None:
    """Delete an experiment and its runs (refused while one of them has not ended)."""
    _transport().result(endpoints.EXPERIMENTS_DELETE, name=name)


def evaluate(eval_data: Any = None, model: str | None = None, run_id: str | None = None, **options: Any) -> dict:
    """Retrieval metrics in the Flow: see :func:`finetuner.evaluation.evaluate` (its arguments, without the
    transport)."""
    saved = get_run(run_id).info()["config"] if run_id is not None else None
    return evaluation.evaluate(_transport(), eval_data, model, run_id, saved=saved, **options)


def build_model(name: str = DEFAULT_TEXT_MODEL, device: str = "cpu", **options: Any) -> EmbeddingModel:
    """The zero-shot embedding model for a backbone name (see ``describe_models()``) or a local folder, built
    here (``pip install "finetuner[inference]"``)."""
    return _model_code().build_model(name, ModelOptions.model_validate(options), device)


def get_model(artifact: str | Path, device: str = "cpu", cache_dir: str | Path | None = None) -> EmbeddingModel:
    """A model for local use: a saved artifact folder, a registered backbone, or a run's artifact by run id
    (``run.artifact_id``; downloaded once into ``cache_dir``, default ~/.cache/finetuner/artifacts). The model
    runs here: ``pip install "finetuner[inference]"``."""
    models = _model_code()
    if is_run_id(artifact) and not Path(artifact).exists():
        root = Path(cache_dir or Path.home() / ".cache" / "finetuner" / "artifacts")
        artifact = get_run(str(artifact)).save_artifact(root / str(artifact))
    return models.build_model(str(artifact), None, device)


def _model_code() -> ModuleType:
    """The service's model code (torch and the model libraries), loaded when a model is used here."""
    try:
        from finetuner_core import models
    except ModuleNotFoundError as exc:
        if (exc.name or "").startswith("finetuner_core."):  # the model code is there, but broken: not a missing extra
            raise
        raise FinetunerError(f"a model runs here with the model code ({exc.name} is missing): {INFERENCE}") from None
    return models


def encode(model: EmbeddingModel, data: Any, batch_size: int = 64) -> Any:
    """Embed ``data`` locally with any model. A list (texts, images, vectors) gives an array ``# (n, dim)``;
    a DocList gets ``.embedding`` set on each document (when its schema has that field) and is returned."""
    if not hasattr(data, "doc_type"):
        return model.encode(list(data), batch_size)
    embeddings = model.encode([_content(doc, model.modality) for doc in data], batch_size)
    for doc, embedding in zip(data, embeddings, strict=True):
        if "embedding" in type(doc).model_fields:
            doc.embedding = embedding
    return data


def _content(doc: Any, modality: str) -> Any:
    if modality == "text" or (modality == "text-image" and getattr(doc, "text", None) is not None):
        return doc.text
    return next(getattr(doc, f) for f in ("blob", "uri", "url", "image", "tensor") if getattr(doc, f, None) is not None)


def describe_models(
    aliases: bool = False, names: list[str] | None = None, flow: bool | None = None
) -> list[dict[str, Any]]:
    """Print and return the registered backbones and Finetuner's model names (or the models ``names``: Hugging Face
    ids, stored models, runs ...), each with its family, modality, output dim, size in parameters and where the
    trainer would take its weights from now (``where``: packaged, store, cached, download needed, unavailable
    offline ...; the Flow says, when one is known; without one, ``where`` is None). Without ``aliases=True`` the
    returned rows are the backbones' only (a Finetuner name's row has ``stands_for``: the id it stands for).

    Besides these, ``timm/<name>[.<tag>]``, ``openclip/<architecture>[::<tag>]``, ``hf-hub:<org>/<name>``, any
    Hugging Face id (``BAAI/bge-small-en-v1.5``, ``openai/clip-vit-base-patch32``), a stored model, a run id and a
    folder under the operator's model roots name a model (docs/guide/models.md). ``flow=False``: the catalogue
    alone, without asking a Flow (None: the Flow when logged in)."""
    if flow is None:
        flow = names is not None or "transport" in _session or bool(os.environ.get(HOST_VARIABLE))
    if flow:
        rows = _transport().result(endpoints.MODELS_DESCRIBE, names=names)["models"]
    else:
        rows = _catalogue_rows()
    keys = ("name", "stands_for", "family", "modality", "output_dim", "parameters", "where")
    rows = [{key: row.get(key) for key in (*keys, "revision", "detail")} for row in rows]
    table = Table("name", "stands for", "family", "modality", "output dim", "size", "where", title="models")
    for row in rows:
        table.add_row(*("" if row[key] is None else str(row[key]) for key in keys))
    Console(width=180).print(table)
    if names is not None or aliases:
        return rows
    backbones = {spec.name for spec in list_backbones()}
    return [row for row in rows if row["name"] in backbones]


def _catalogue_rows() -> list[dict[str, Any]]:
    """The catalogue as the client knows it without a Flow (where the weights would come from is the Flow's)."""
    rows = [
        {"name": s.name, "family": s.family, "modality": s.modality, "output_dim": s.output_dim}
        for s in list_backbones()
    ]
    rows += [
        {"name": a.name, "stands_for": a.target, "family": a.family, "modality": a.modality, "output_dim": a.output_dim}
        for a in list_aliases()
    ]
    return [{**row, "parameters": PARAMETERS.get(row.get("stands_for") or row["name"])} for row in rows]
