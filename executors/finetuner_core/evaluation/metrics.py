"""Retrieval metrics as pure functions of a hit matrix.

``hits[q, i]`` is True when the ``i``-th retrieved item for query ``q`` is relevant; ``num_relevant[q]`` is
how many relevant items the index holds for ``q``. Queries with no relevant item are left out of every mean
and counted in ``queries_without_relevant``. Each metric is the mean over queries at cut-off ``k``:

- precision@k: relevant retrieved / k
- recall@k: relevant retrieved / num_relevant
- hit@k: 1 when any of the top k is relevant
- mrr@k: 1 / rank of the first relevant item in the top k (0 when none)
- map@k: sum over relevant ranks i <= k of precision@i, divided by min(num_relevant, k)
- ndcg@k: binary DCG with 1 / log2(rank + 1) gains, divided by the ideal DCG at k
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def precision(hits: np.ndarray, num_relevant: np.ndarray, k: int) -> np.ndarray:
    return hits[:, :k].sum(axis=1) / k


def recall(hits: np.ndarray, num_relevant: np.ndarray, k: int) -> np.ndarray:
    return hits[:, :k].sum(axis=1) / num_relevant


def hit(hits: np.ndarray, num_relevant: np.ndarray, k: int) -> np.ndarray:
    return hits[:, :k].any(axis=1).astype(np.float64)


def mrr(hits: np.ndarray, num_relevant: np.ndarray, k: int) -> np.ndarray:
    top = hits[:, :k]
    first = top.argmax(axis=1)
    return np.where(top.any(axis=1), 1.0 / (first + 1), 0.0)


def average_precision(hits: np.ndarray, num_relevant: np.ndarray, k: int) -> np.ndarray:
    top = hits[:, :k].astype(np.float64)
    precision_at_rank = np.cumsum(top, axis=1) / np.arange(1, top.shape[1] + 1)
    return (precision_at_rank * top).sum(axis=1) / np.minimum(num_relevant, k)


def ndcg(hits: np.ndarray, num_relevant: np.ndarray, k: int) -> np.ndarray:
    top = hits[:, :k].astype(np.float64)
    discounts = 1.0 / np.log2(np.arange(2, top.shape[1] + 2))
    dcg = (top * discounts).sum(axis=1)
    ideal_cumulative = np.cumsum(discounts)
    ideal = ideal_cumulative[np.minimum(num_relevant, top.shape[1]) - 1]
    return dcg / ideal


METRICS: dict[str, Callable[[np.ndarray, np.ndarray, int], np.ndarray]] = {
    "precision": precision,
    "recall": recall,
    "hit": hit,
    "mrr": mrr,
    "map": average_precision,
    "ndcg": ndcg,
}


def retrieval_metrics(hits: np.ndarray, num_relevant: np.ndarray, ks: tuple[int, ...]) -> dict[str, float]:
    """Every metric in :data:`METRICS` at every ``k`` in ``ks``, as ``{"name@k": mean}``."""
    hits = np.asarray(hits, dtype=bool)
    num_relevant = np.asarray(num_relevant)
    if hits.ndim != 2 or len(hits) != len(num_relevant):
        raise ValueError(f"hits {hits.shape} and num_relevant {num_relevant.shape} do not line up")
    if max(ks) > hits.shape[1]:
        raise ValueError(f"k={max(ks)} is larger than the {hits.shape[1]} results retrieved per query")
    keep = num_relevant > 0
    result: dict[str, float] = {}
    for name, fn in METRICS.items():
        for k in ks:
            values = fn(hits[keep], num_relevant[keep], k) if keep.any() else np.zeros(0)
            result[f"{name}@{k}"] = float(values.mean()) if len(values) else 0.0
    result["queries"] = int(keep.sum())
    result["queries_without_relevant"] = int((~keep).sum())
    return result
