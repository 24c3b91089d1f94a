"""The evaluation of each data shape, by the shape's name (:data:`EVALUATIONS`): retrieval over the records'
evaluation set (``dataset.EVAL_SETS``: labeled items by label, text-image and query-document pairs by their
pairs), or the correlation of cosine similarity with the gold scores (scored pairs, :mod:`.scored`).

A run's metrics before training, at evaluation steps and after come from :func:`evaluate_records`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from finetuner_core.evaluation.dataset import records_set, shape_name
from finetuner_core.evaluation.evaluate import DEFAULT_KS, Encoder, evaluate
from finetuner_core.evaluation.scored import evaluate_scored
from finetuner_protocol.data.records import LABELED, QUERY_DOC, SCORED, TEXT_IMAGE

Routine = Callable[[Encoder, list[Any], tuple[int, ...], Encoder | None], dict]


def _retrieval(model: Encoder, records: list[Any], ks: tuple[int, ...], index_model: Encoder | None) -> dict:
    """Metrics at every k of ``ks`` of ``model`` (and ``index_model`` for the index, when given)."""
    return evaluate(records_set(records), model, ks, index_model).metrics


def _correlation(model: Encoder, records: list[Any], ks: tuple[int, ...], index_model: Encoder | None) -> dict:
    """Spearman and Pearson correlation (no cut-off: ``ks`` and ``index_model`` are not used)."""
    return evaluate_scored(model, records)


EVALUATIONS: dict[str, Routine] = {
    LABELED: _retrieval,
    TEXT_IMAGE: _retrieval,
    QUERY_DOC: _retrieval,
    SCORED: _correlation,
}


def evaluate_records(
    model: Encoder, records: list[Any], ks: tuple[int, ...] = DEFAULT_KS, index_model: Encoder | None = None
) -> dict:
    """The metrics of ``model`` on evaluation ``records`` of any shape, by that shape's routine."""
    return EVALUATIONS[shape_name(records)](model, records, tuple(ks), index_model)
