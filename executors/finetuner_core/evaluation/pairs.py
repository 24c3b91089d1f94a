"""Evaluation of pair data, by retrieval for unscored pairs and by correlation for scored ones.

- text-image pairs: each distinct text is a query against every image; an image is relevant to a text when the
  two were paired (several images may share one caption, e.g. ``a photo of a cat``);
- query-document pairs: each distinct query is a query against every distinct document; the documents it was
  paired with are relevant (relevance by pairs);
- scored pairs: Spearman and Pearson correlation of cosine and gold score (:mod:`.scored`).

Retrieval is scored with the same steps and metrics as any evaluation (``mrr@10`` ...); each shape's routine is
in :data:`finetuner_core.evaluation.routines.EVALUATIONS`.
"""

from __future__ import annotations

from typing import Any

from finetuner_core.evaluation.dataset import query_doc_set
from finetuner_core.evaluation.errors import EvaluationError
from finetuner_core.evaluation.evaluate import DEFAULT_KS, Encoder
from finetuner_core.evaluation.routines import evaluate_records
from finetuner_protocol.data.eval_depth import check_eval_depth

__all__ = ["check_eval_data", "evaluate_pairs", "query_doc_set"]


def evaluate_pairs(
    model: Encoder, pairs: list[Any], ks: tuple[int, ...] = DEFAULT_KS, index_model: Encoder | None = None
) -> dict:
    """Text-to-image or query-to-document metrics of ``model`` (or of ``model`` for the queries and
    ``index_model`` for the index), or the correlations of scored pairs."""
    return evaluate_records(model, pairs, ks, index_model)


def check_eval_data(records: list[Any], ks: tuple[int, ...] = DEFAULT_KS) -> None:
    """Refuse evaluation records that cannot be scored (retrieval: at every k), before a run is stored and a
    model loaded. Scored pairs are checked by their validation (at least two pairs, two different scores)."""
    try:
        check_eval_depth(records, ks)
    except ValueError as exc:
        raise EvaluationError(str(exc)) from None
