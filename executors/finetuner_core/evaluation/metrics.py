"""Retrieval metrics as pure functions of judged rankings.

A ranking is judged once (see :mod:`finetuner_core.evaluation.relevance`) into :class:`Judgements`: the grade of
every retrieved item, how many relevant items each query has, and the grades of the best possible ranking.
Binary relevance is the case where every grade is 0 or 1. Each metric is a mean over queries at cut-off ``k``
(``R`` = the query's number of relevant items, ``rel_i`` = 1 when the item at rank ``i`` is relevant,
``g_i`` = its grade):

- precision@k: sum(rel_i, i <= k) / k
- recall@k: sum(rel_i, i <= k) / R
- f1@k: harmonic mean of precision@k and recall@k, which is 2 * sum(rel_i, i <= k) / (k + R)
- hit@k: 1 when any of the top k is relevant
- mrr@k: 1 / rank of the first relevant item in the top k (0 when none)
- map@k: sum over relevant ranks i <= k of precision@i, divided by min(R, k)
- ndcg@k: DCG@k divided by the DCG@k of the ideal ranking (the relevant items, highest grade first)
- dcg@k: sum(g_i / log2(i + 1), i <= k), linear gains (binary relevance: g_i = rel_i)
- r_precision: precision@R, with no cut-off; averaged over the queries whose R relevant items fit in the
  retrieved depth (``r_precision_queries`` says how many)

Queries with no relevant item are left out of every mean and counted in ``queries_without_relevant``.
Ranks are taken as given: how ties in scores are ordered is decided by the index (lower id first).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from finetuner_core.evaluation.errors import EvaluationError


@dataclass(frozen=True)
class Judgements:
    """Judged rankings of ``q`` queries to a depth ``d``.

    ``gains``: the grade of each retrieved item, 0 when it is not relevant or missing.  # (q, d) float64
    ``num_relevant``: relevant items in the index for each query.  # (q,) int64
    ``ideal``: the relevant items' grades, highest first, cut to ``d`` and padded with 0.  # (q, d) float64
    """

    gains: np.ndarray
    num_relevant: np.ndarray
    ideal: np.ndarray

    def __post_init__(self) -> None:
        q, d = self.gains.shape if self.gains.ndim == 2 else (-1, -1)
        if q < 0 or self.num_relevant.shape != (q,) or self.ideal.shape != (q, d):
            raise EvaluationError(
                f"judgements do not line up: gains {self.gains.shape}, num_relevant "
                f"{self.num_relevant.shape}, ideal {self.ideal.shape}"
            )

    @classmethod
    def binary(cls, hits: np.ndarray, num_relevant: np.ndarray) -> Judgements:
        """From a hit matrix ``# (q, d) bool`` and the number of relevant items ``# (q,)``."""
        hits = np.asarray(hits, dtype=bool)
        num_relevant = np.asarray(num_relevant, dtype=np.int64)
        if hits.ndim != 2 or num_relevant.shape != hits.shape[:1]:
            raise EvaluationError(f"hits {hits.shape} and num_relevant {num_relevant.shape} do not line up")
        ideal = np.arange(hits.shape[1])[None, :] < num_relevant[:, None]
        return cls(hits.astype(np.float64), num_relevant, ideal.astype(np.float64))

    @property
    def hits(self) -> np.ndarray:
        """``# (q, d) bool``"""
        return self.gains > 0

    @property
    def depth(self) -> int:
        return self.gains.shape[1]

    def select(self, rows: np.ndarray) -> Judgements:
        """The judgements of the queries in ``rows`` (a boolean mask or indices)."""
        return Judgements(self.gains[rows], self.num_relevant[rows], self.ideal[rows])


def _found(j: Judgements, k: int) -> np.ndarray:
    return j.hits[:, :k].sum(axis=1)


def _discounts(k: int) -> np.ndarray:
    return 1.0 / np.log2(np.arange(2, k + 2))


def precision(j: Judgements, k: int) -> np.ndarray:
    return _found(j, k) / k


def recall(j: Judgements, k: int) -> np.ndarray:
    return _found(j, k) / j.num_relevant


def f1(j: Judgements, k: int) -> np.ndarray:
    return 2 * _found(j, k) / (k + j.num_relevant)


def hit(j: Judgements, k: int) -> np.ndarray:
    return j.hits[:, :k].any(axis=1).astype(np.float64)


def mrr(j: Judgements, k: int) -> np.ndarray:
    top = j.hits[:, :k]
    return np.where(top.any(axis=1), 1.0 / (top.argmax(axis=1) + 1), 0.0)


def average_precision(j: Judgements, k: int) -> np.ndarray:
    top = j.hits[:, :k].astype(np.float64)
    precision_at_rank = np.cumsum(top, axis=1) / np.arange(1, k + 1)
    return (precision_at_rank * top).sum(axis=1) / np.minimum(j.num_relevant, k)


def dcg(j: Judgements, k: int) -> np.ndarray:
    return j.gains[:, :k] @ _discounts(k)


def ndcg(j: Judgements, k: int) -> np.ndarray:
    return dcg(j, k) / (j.ideal[:, :k] @ _discounts(k))


def r_precision(j: Judgements) -> np.ndarray:
    """Precision at rank R; NaN for a query whose R relevant items do not fit in the depth."""
    fits = j.num_relevant <= j.depth
    at_r = np.clip(j.num_relevant - 1, 0, j.depth - 1)
    found = np.cumsum(j.hits, axis=1)[np.arange(len(at_r)), at_r]
    return np.where(fits, found / np.maximum(j.num_relevant, 1), np.nan)


METRICS: dict[str, Callable[[Judgements, int], np.ndarray]] = {
    "precision": precision,
    "recall": recall,
    "f1": f1,
    "hit": hit,
    "mrr": mrr,
    "map": average_precision,
    "ndcg": ndcg,
    "dcg": dcg,
}
"""Metrics at a cut-off ``k``: each maps judgements to one value per query ``# (q,)``; keys are ``name@k``."""

RANK_METRICS: dict[str, Callable[[Judgements], np.ndarray]] = {"r_precision": r_precision}
"""Metrics without a cut-off: one value per query ``# (q,)``, NaN where undefined; keys are ``name``."""


def metric_table(judgements: Judgements, ks: tuple[int, ...]) -> dict[str, float]:
    """Every metric of :data:`METRICS` at every ``k`` and every metric of :data:`RANK_METRICS`."""
    if not ks or min(ks) < 1:
        raise EvaluationError(f"every k must be >= 1, got {tuple(ks)}")
    if max(ks) > judgements.depth:
        raise EvaluationError(f"k={max(ks)} is larger than the {judgements.depth} results retrieved per query")
    keep = judgements.num_relevant > 0
    judged = judgements.select(keep)
    result: dict[str, float] = {}
    for name, fn in METRICS.items():
        for k in ks:
            result[f"{name}@{k}"] = _mean(fn(judged, k))
    for name, fn in RANK_METRICS.items():
        values = fn(judged)
        result[name] = _mean(values[~np.isnan(values)])
        result[f"{name}_queries"] = int((~np.isnan(values)).sum())
    result["queries"] = int(keep.sum())
    result["queries_without_relevant"] = int((~keep).sum())
    return result


def retrieval_metrics(hits: np.ndarray, num_relevant: np.ndarray, ks: tuple[int, ...]) -> dict[str, float]:
    """:func:`metric_table` for binary relevance given as a hit matrix ``# (q, d)`` and ``# (q,)`` counts."""
    return metric_table(Judgements.binary(hits, num_relevant), ks)


def _mean(values: np.ndarray) -> float:
    return float(values.mean()) if len(values) else 0.0
