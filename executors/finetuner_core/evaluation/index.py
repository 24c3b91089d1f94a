"""The only module that knows FAISS: an exact (Flat) index searched in bounded batches."""

from __future__ import annotations

import faiss
import numpy as np

METRIC_TYPES = {"cosine", "inner_product", "l2"}


class FlatIndex:
    """Exact nearest-neighbour search.

    ``cosine`` L2-normalises vectors and searches by inner product; ``l2`` returns negated squared
    distances as scores, so a higher score is always closer. Results within a row are ordered by score,
    then by id (ties go to the lower id, so results are deterministic).
    """

    def __init__(self, vectors: np.ndarray, metric: str = "cosine"):
        if metric not in METRIC_TYPES:
            raise ValueError(f"unknown metric {metric!r}; allowed: {', '.join(sorted(METRIC_TYPES))}")
        vectors = _as_matrix(vectors, "index vectors")
        self.metric = metric
        self.dim = vectors.shape[1]
        self._index = faiss.IndexFlatL2(self.dim) if metric == "l2" else faiss.IndexFlatIP(self.dim)
        self._index.add(self._prepare(vectors))

    def __len__(self) -> int:
        return self._index.ntotal

    def search(self, queries: np.ndarray, k: int, batch_size: int = 4096) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` scores and ids for each query.  # (q, k) float32, (q, k) int64"""
        queries = _as_matrix(queries, "query vectors")
        if queries.shape[1] != self.dim:
            raise ValueError(f"query dimension {queries.shape[1]} does not match index dimension {self.dim}")
        if not 1 <= k <= len(self):
            raise ValueError(f"k={k} must be between 1 and the index size ({len(self)})")
        parts = [
            self._search_batch(queries[i : i + batch_size], k) for i in range(0, len(queries), batch_size)
        ]
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    def _search_batch(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        scores, ids = self._index.search(self._prepare(queries), k)
        if self.metric == "l2":
            scores = -scores
        order = np.lexsort((ids, -scores), axis=-1)
        return np.take_along_axis(scores, order, -1), np.take_along_axis(ids, order, -1)

    def _prepare(self, vectors: np.ndarray) -> np.ndarray:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if self.metric == "cosine":
            vectors = vectors.copy()
            faiss.normalize_L2(vectors)
        return vectors


def _as_matrix(vectors: np.ndarray, what: str) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or len(vectors) == 0:
        raise ValueError(f"{what} must be a non-empty 2-d array, got shape {vectors.shape}")
    if not np.isfinite(vectors).all():
        rows = np.flatnonzero(~np.isfinite(vectors).all(axis=1))[:5].tolist()
        raise ValueError(f"{what} contain NaN or infinite values (rows {rows})")
    return vectors
