"""Evaluation of pair data, by retrieval for unscored pairs and by correlation for scored ones.

- text-image pairs: each distinct text is a query against every image; an image is relevant to a text when the
  two were paired (several images may share one caption, e.g. ``a photo of a cat``);
- query-document pairs: each distinct query is a query against every distinct document; the documents it was
  paired with are relevant (relevance by pairs);
- scored pairs: Spearman and Pearson correlation of cosine and gold score (:mod:`.scored`).

Retrieval is scored with the same steps and metrics as any evaluation (``mrr@10`` ...).
"""

from __future__ import annotations

from typing import Any

from finetuner_core.evaluation.checks import check_ks, check_not_empty, normalise_ks
from finetuner_core.evaluation.dataset import paired_set, query_doc_set
from finetuner_core.evaluation.evaluate import DEFAULT_KS, Encoder, check_eval_records, evaluate
from finetuner_core.evaluation.scored import evaluate_scored
from finetuner_protocol.data.records import QueryDocItem, ScoredPairItem


def evaluate_pairs(
    model: Encoder, pairs: list[Any], ks: tuple[int, ...] = DEFAULT_KS, index_model: Encoder | None = None
) -> dict:
    """Text-to-image or query-to-document metrics of ``model`` (or of ``model`` for the queries and
    ``index_model`` for the index), or the correlations of scored pairs."""
    if isinstance(pairs[0], ScoredPairItem):
        return evaluate_scored(model, pairs)
    eval_set = query_doc_set(pairs) if isinstance(pairs[0], QueryDocItem) else paired_set(pairs)
    return evaluate(eval_set, model, ks, index_model).metrics


def check_eval_data(records: list[Any], ks: tuple[int, ...] = DEFAULT_KS) -> None:
    """Refuse evaluation records that cannot be scored (retrieval: at every k), before a run is stored and a
    model loaded. Scored pairs are checked by their validation (at least two pairs, two different scores)."""
    if isinstance(records[0], ScoredPairItem):
        return
    if not isinstance(records[0], QueryDocItem):
        check_eval_records(records, ks)
        return
    eval_set = query_doc_set(records)
    check_not_empty(len(eval_set.queries), len(eval_set.index_inputs))
    check_ks(normalise_ks(ks), len(eval_set.index_inputs), leaves_own_out=False)
