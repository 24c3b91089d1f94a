"""Evaluation of scored pairs: how well the cosine similarity of each pair's embeddings follows its gold score.

Spearman's rank correlation (the usual STS figure) and Pearson's linear correlation, from scipy. A run with
scored evaluation data reports these (``spearman``, ``pearson``) before and after training, and can monitor either.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import stats

from finetuner_core.evaluation.checks import check_embeddings
from finetuner_core.evaluation.errors import EvaluationError
from finetuner_core.evaluation.evaluate import Encoder


def evaluate_scored(model: Encoder, records: list[Any], ks: tuple[int, ...] = ()) -> dict[str, float]:
    """``spearman`` and ``pearson`` between the cosine of each pair and its score, and the number of ``pairs``
    (``ks`` is not used: there is no ranking cut-off)."""
    texts = list(dict.fromkeys(text for record in records for text in (record.text, record.text_pair)))
    position = {text: i for i, text in enumerate(texts)}
    embeddings = check_embeddings(model.encode(texts), len(texts), "pair", lambda i: repr(texts[i][:60]))
    embeddings = embeddings / np.maximum(np.linalg.norm(embeddings, axis=1, keepdims=True), 1e-12)
    first = embeddings[[position[record.text] for record in records]]
    second = embeddings[[position[record.text_pair] for record in records]]
    cosines = np.sum(first * second, axis=1)
    return {**correlations(cosines, np.array([record.score for record in records])), "pairs": len(records)}


def correlations(predicted: np.ndarray, gold: np.ndarray) -> dict[str, float]:
    """Spearman and Pearson correlation of ``predicted`` with ``gold``.  # (n,), (n,)"""
    if len(predicted) < 2:
        raise EvaluationError(f"correlation needs at least 2 scored pairs, got {len(predicted)}")
    if np.ptp(gold) == 0:
        raise EvaluationError("every gold score is the same: a correlation with them is undefined")
    if np.ptp(predicted) == 0:
        raise EvaluationError("the model gives every pair the same cosine similarity: the correlation is undefined")
    return {
        "spearman": float(stats.spearmanr(predicted, gold).statistic),
        "pearson": float(stats.pearsonr(predicted, gold).statistic),
    }
