"""What ``/evaluate`` takes besides the data (the models to score) and what it answers.

``parameters`` name the models:

- one model: ``config.model`` with ``config.model_options`` (a registered backbone or a local folder), or
  ``run_id`` (a run's artifact);
- separate query and index models (e.g. a CLIP model's text and vision towers): ``query_model`` and
  ``index_model``, each ``{"model": ..., "model_options": {...}}`` or ``{"run_id": ...}``;
- several models side by side: ``models``, a list whose entries are a model name, or a dict like the above
  (``{"model": ...}``, ``{"run_id": ...}``, or ``{"query_model": ..., "index_model": ...}``) with an
  optional ``name``.

The answer holds the first model's ``metrics`` and ``examples`` (so one model reads as before), every model in
``models`` (name, metrics, examples), with two models or more the ``changes`` (the queries whose results changed
most from the first model to the second, both rankings side by side), the ``warnings`` about the data and the
sizes of the query and index sets.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from finetuner_core.evaluation.dataset import EvalSet
from finetuner_core.evaluation.errors import EvaluationError
from finetuner_core.evaluation.evaluate import Evaluation
from finetuner_core.evaluation.examples import changed_examples
from finetuner_protocol.backbones import check_model_source
from finetuner_protocol.model_options import ModelOptions


class ModelRef(BaseModel):
    """One model: a registered backbone or local folder (with its options), or a run's artifact."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    model: str | None = Field(None, description="registered backbone name or local model folder")
    model_options: dict[str, Any] = Field(default_factory=dict, description="options of the model")
    run_id: str | None = Field(None, description="a run whose artifact is evaluated")

    @model_validator(mode="after")
    def _one_source(self) -> ModelRef:
        if (self.model is None) == (self.run_id is None):
            raise ValueError("give exactly one of 'model' and 'run_id'")
        return self

    @property
    def label(self) -> str:
        return f"run {self.run_id}" if self.run_id else str(self.model)


class ModelSpec(BaseModel):
    """What one column of the comparison scores: ``query`` embeds the queries, ``index`` (or ``query``) the index."""

    model_config = ConfigDict(extra="forbid")

    name: str
    query: ModelRef
    index: ModelRef | None = None


def model_specs(parameters: dict[str, Any], model: str, model_options: dict[str, Any]) -> list[ModelSpec]:
    """The models a request names; ``model`` / ``model_options`` (the request's config) by default."""
    try:
        if parameters.get("models"):
            return [_spec(entry) for entry in parameters["models"]]
        default = {"run_id": parameters["run_id"]} if parameters.get("run_id") else {"model": model}
        if not parameters.get("run_id"):
            default["model_options"] = model_options
        picked = {key: parameters[key] for key in ("query_model", "index_model") if parameters.get(key)}
        return [_spec(picked or default)]
    except ValidationError as exc:
        lines = [f"  {'.'.join(map(str, e['loc'])) or 'models'}: {e['msg']}" for e in exc.errors()]
        raise EvaluationError("invalid models to evaluate:\n" + "\n".join(lines)) from None


def check_model_sources(specs: list[ModelSpec], model_roots: Iterable[Path]) -> None:
    """Every model named (not a run's): a registered name or a folder under the operator's roots, its weights file
    under one (``models.registry.check_model_source``); runs are checked against their owner by the run store."""
    roots = list(model_roots)
    for spec in specs:
        for ref in (spec.query, spec.index):
            if ref is not None and ref.model is not None:
                try:
                    weights = ModelOptions.model_validate(ref.model_options).weights
                except ValidationError as exc:
                    raise EvaluationError(f"model_options of {ref.label}: {exc.errors()[0]['msg']}") from None
                check_model_source(ref.model, weights, roots)


def _spec(entry: str | dict[str, Any]) -> ModelSpec:
    if isinstance(entry, str):
        entry = {"model": entry}
    if not isinstance(entry, dict):
        raise EvaluationError(f"a model to evaluate is a name or a dict, got {entry!r}")
    entry = dict(entry)
    name = entry.pop("name", None)
    if "query_model" in entry or "index_model" in entry:
        query = ModelRef.model_validate(entry.pop("query_model", None) or {})
        index = ModelRef.model_validate(entry.pop("index_model", None) or {})
        if entry:
            raise EvaluationError(f"unexpected keys next to query_model / index_model: {sorted(entry)}")
        return ModelSpec(name=name or f"{query.label} / {index.label}", query=query, index=index)
    query = ModelRef.model_validate(entry)
    return ModelSpec(name=name or query.label, query=query)


def answer(eval_set: EvalSet, evaluations: dict[str, Evaluation]) -> dict[str, Any]:
    """The ``/evaluate`` answer for one or more models scored on ``eval_set``."""
    first = next(iter(evaluations.values()))
    return {
        "metrics": first.metrics,
        "examples": first.examples,
        "models": [{"name": name, "metrics": e.metrics, "examples": e.examples} for name, e in evaluations.items()],
        "changes": _changes(list(evaluations.values())),
        "relevance": first.relevance,
        "warnings": first.warnings,
        "queries": len(eval_set.queries),
        "index": len(eval_set.index_inputs),
        "items": len(eval_set.queries) + len(eval_set.index_inputs) - int((eval_set.own >= 0).sum()),
    }


def _changes(evaluations: list[Evaluation]) -> list[dict[str, Any]]:
    """With two models or more, the queries whose results changed most from the first model to the second."""
    if len(evaluations) < 2 or evaluations[0].ranking is None or evaluations[1].ranking is None:
        return []
    return changed_examples(evaluations[0].ranking, evaluations[1].ranking)
