"""``/evaluate``: retrieval metrics of any model, run or models side by side, computed in the Flow."""

from __future__ import annotations

from typing import Any

from finetuner.data import retrieval_docs, to_wire_docs
from finetuner.settings import settings_of
from finetuner.transport import Transport
from finetuner_protocol import endpoints
from finetuner_protocol.backbones import DEFAULT_TEXT_MODEL, UNUSABLE, ModelNotAvailableError
from finetuner_protocol.settings import FitSettings, parse_settings


def evaluate(
    transport: Transport,
    eval_data: Any = None,
    model: str | None = None,
    run_id: str | None = None,
    *,
    saved: dict[str, Any] | None = None,
    queries: list | None = None,
    index: list | None = None,
    pairs: list | None = None,
    models: list | None = None,
    query_model: Any = None,
    index_model: Any = None,
    evaluation: dict | None = None,
    full: bool = False,
    **options: Any,
) -> dict:
    """Retrieval metrics in the Flow, of ``model`` (or run ``run_id``'s artifact, or several ``models`` side by
    side, or a ``query_model`` / ``index_model`` pair for cross-modal search).

    Data: ``eval_data`` (labeled items or text-image pairs: every item a query against the others), or
    ``queries`` and ``index`` (values or ``(value, label)``) with relevance by label or by ``pairs`` of
    ``(query number, index number[, grade])``. ``evaluation`` holds the evaluation options (index kind ...).
    Returns the metric table, or with ``full=True`` the whole answer (sample queries with their top results,
    per-model tables, warnings). ``saved``: the stored settings of run ``run_id`` (its model and model options
    are the defaults).
    """
    if saved is not None:  # the run's stored settings
        stored = {"model_options": saved["model_options"], "model_modality": saved.get("model_modality")}
        options = {**stored, **options}
        model = model or saved["model"]
    config = settings_of(model or DEFAULT_TEXT_MODEL, dict(options))
    if run_id is None:
        config = _resolved(transport, config, [model for model in (models or []) if isinstance(model, str)])
    parameters = {"config": config.model_dump(mode="json"), "run_id": run_id, "models": models}
    parameters.update(query_model=query_model, index_model=index_model, evaluation=evaluation)
    parameters = {key: value for key, value in parameters.items() if value is not None}
    if queries is not None:
        docs = retrieval_docs(queries, index or [], pairs)
    else:
        docs = to_wire_docs(eval_data, "eval", config.modality, config.csv_options.is_labeled)
    answer = transport.result(endpoints.EVALUATE, docs, **parameters)
    return answer if full else answer["metrics"]


def _resolved(transport: Transport, config: FitSettings, others: list[str]) -> FitSettings:
    """The models of an evaluation resolved by the Flow before any data is sent: one that it cannot use is refused
    in one line saying what to do; ``config`` gets what its model takes when only the Flow can tell."""
    names = list(dict.fromkeys([config.model, *others]))
    options = config.model_options.model_dump(mode="json", exclude_unset=True)
    rows = transport.result(endpoints.MODELS_DESCRIBE, names=names, model_options=options)["models"]
    for row in rows:
        if row["where"] in UNUSABLE:
            raise ModelNotAvailableError(row["detail"] or f"model {row['name']!r} is {row['where']}")
    modality = rows[0].get("modality")
    if config.whole_modality is not None or modality is None:
        return config
    return parse_settings({**config.model_dump(mode="json", exclude_unset=True), "model_modality": modality})
