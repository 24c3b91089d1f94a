"""Retrieval for evaluation: the top results of each query, its own item left out when it is in the index."""

from __future__ import annotations

import numpy as np

from finetuner_core.evaluation.index import Index


def retrieve(
    index: Index, queries: np.ndarray, depth: int, own: np.ndarray | None = None, batch_size: int = 4096
) -> tuple[np.ndarray, np.ndarray]:
    """The top ``depth`` scores and ids of each query, without ``own[q]`` (-1: nothing to leave out).

    A query whose own item is in the index is searched one deeper and its own id is removed, so every query
    gets the ``depth`` best other items, in the index's order (score, then lower id).  # (q, depth), (q, depth)
    """
    if own is None or not (own >= 0).any():
        return index.search(queries, depth, batch_size)
    scores, ids = index.search(queries, depth + 1, batch_size)
    keep = (ids != own[:, None]) | (own[:, None] < 0)
    keep[keep.all(axis=1), -1] = False  # the own item fell outside the results: drop the last one instead
    return scores[keep].reshape(len(ids), depth), ids[keep].reshape(len(ids), depth)
