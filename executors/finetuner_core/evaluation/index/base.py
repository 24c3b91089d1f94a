"""The base of every index: metrics as scores, batched search, the order of results and ties, input checks."""

from __future__ import annotations

import faiss
import numpy as np

METRIC_TYPES = ("cosine", "inner_product", "l2")
GPU_MAX_K = 2048  # FAISS GPU's largest k; beyond it the CPU copy of the index answers
TIE_BATCH = 16  # queries searched deeper at once to settle ties (bounds memory when many vectors tie)


def gpu_available() -> bool:
    """True when this FAISS build has GPU support and sees at least one GPU."""
    return hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0


class Index:
    """Base class: metric handling, batched search, ordering, checks. Subclasses create the FAISS index."""

    kind = "base"
    exact = False  # exact indexes settle ties at the k-th place by id
    gpu_capable = True

    def __init__(self, vectors: np.ndarray, metric: str = "cosine", use_gpu: bool | None = None):
        if metric not in METRIC_TYPES:
            raise ValueError(f"unknown metric {metric!r}; allowed: {', '.join(METRIC_TYPES)}")
        if use_gpu and not gpu_available():
            raise ValueError("use_gpu=True but this FAISS build has no GPU support or sees no GPU")
        vectors = _as_matrix(vectors, "index vectors")
        self.metric = metric
        self.dim = vectors.shape[1]
        self.use_gpu = gpu_available() if use_gpu is None else use_gpu
        self._index = self._create(vectors)
        self._gpu_index = None
        self._add(vectors)

    # --- what a subclass provides ---------------------------------------------------------------------------
    def _create(self, vectors: np.ndarray) -> faiss.Index:
        """An empty (trained, where needed) FAISS index for ``vectors``."""
        raise NotImplementedError

    # --- shared ---------------------------------------------------------------------------------------------
    @property
    def faiss_metric(self) -> int:
        return faiss.METRIC_L2 if self.metric == "l2" else faiss.METRIC_INNER_PRODUCT

    def __len__(self) -> int:
        return self._index.ntotal

    def add(self, vectors: np.ndarray, batch_size: int = 65536) -> None:
        """Append ``vectors`` (ids continue from ``len(self)``), a batch at a time.  # (n, dim)"""
        vectors = _as_matrix(vectors, "index vectors")
        self._check_dim(vectors, "index")
        self._add(vectors, batch_size)

    def _add(self, vectors: np.ndarray, batch_size: int = 65536) -> None:
        for start in range(0, len(vectors), batch_size):
            self._index.add(self._prepare(vectors[start : start + batch_size]))
        self._gpu_index = None

    def search(self, queries: np.ndarray, k: int, batch_size: int = 4096) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` scores and ids for each query.  # (q, k) float32, (q, k) int64"""
        queries = _as_matrix(queries, "query vectors")
        self._check_dim(queries, "query")
        if not 1 <= k <= len(self):
            raise ValueError(f"k={k} must be between 1 and the index size ({len(self)})")
        scores = np.empty((len(queries), k), np.float32)
        ids = np.empty((len(queries), k), np.int64)
        for start in range(0, len(queries), batch_size):
            end = start + batch_size
            scores[start:end], ids[start:end] = self._search_batch(queries[start:end], k)
        return scores, ids

    def _search_batch(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The k best of a batch by (score, id); an exact index also settles ties at the k-th place."""
        queries = self._prepare(queries)
        if not self.exact:
            return self._ranked(queries, k)
        scores, ids = self._ranked(queries, min(k + 1, len(self)))
        tied = _tie_reaches_last(scores, k)
        if tied.any():
            scores[tied, :k], ids[tied, :k] = self._untie(queries[tied], k)
        return scores[:, :k], ids[:, :k]

    def _untie(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Search deeper until the score at the k-th place ends, so that the lower ids win the ties."""
        scores, ids = np.empty((len(queries), k), np.float32), np.empty((len(queries), k), np.int64)
        for start in range(0, len(queries), TIE_BATCH):
            rows = queries[start : start + TIE_BATCH]
            depth = min(2 * (k + 1), len(self))
            found = self._ranked(rows, depth)
            while depth < len(self) and _tie_reaches_last(found[0], k).any():
                depth = min(2 * depth, len(self))
                found = self._ranked(rows, depth)
            scores[start : start + len(rows)], ids[start : start + len(rows)] = found[0][:, :k], found[1][:, :k]
        return scores, ids

    def _ranked(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The top k of prepared queries, as scores (higher is closer) ordered by score, then id."""
        scores, ids = self._top_k(queries, k)
        scores[ids < 0] = -np.inf
        order = np.lexsort((ids, -scores), axis=-1)
        return np.take_along_axis(scores, order, -1), np.take_along_axis(ids, order, -1)

    def _top_k(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """FAISS's search, its scores turned so that higher is closer.  # (q, k), (q, k)"""
        scores, ids = self._searcher(k).search(queries, k, params=self._search_params(k))
        return (-scores if self.metric == "l2" else scores), ids

    def _on_gpu(self, k: int) -> bool:
        return self.use_gpu and self.gpu_capable and k <= GPU_MAX_K

    def _searcher(self, k: int) -> faiss.Index:
        if not self._on_gpu(k):
            return self._index
        if self._gpu_index is None:
            self._gpu_index = faiss.index_cpu_to_all_gpus(self._index)
        return self._gpu_index

    def _search_params(self, k: int) -> faiss.SearchParameters | None:
        return None

    def _prepare(self, vectors: np.ndarray) -> np.ndarray:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if self.metric == "cosine":
            vectors = vectors.copy()
            faiss.normalize_L2(vectors)
        return vectors

    def _check_dim(self, vectors: np.ndarray, what: str) -> None:
        if vectors.shape[1] != self.dim:
            raise ValueError(f"{what} dimension {vectors.shape[1]} does not match index dimension {self.dim}")


def _tie_reaches_last(scores: np.ndarray, k: int) -> np.ndarray:
    """Rows whose k-th score equals their last score: items beyond the results may tie it.  # (q, d) -> (q,)"""
    if scores.shape[1] <= k:
        return np.zeros(len(scores), bool)
    return np.isfinite(scores[:, k - 1]) & (scores[:, k - 1] == scores[:, -1])


def _as_matrix(vectors: np.ndarray, what: str) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or len(vectors) == 0 or vectors.shape[1] == 0:
        raise ValueError(f"{what} must be a non-empty 2-d array, got shape {vectors.shape}")
    rows = non_finite_rows(vectors)
    if len(rows):
        raise ValueError(f"{what} contain NaN or infinite values (rows {rows[:5].tolist()})")
    return vectors


def non_finite_rows(vectors: np.ndarray, batch_size: int = 65536) -> np.ndarray:
    """Indices of the rows holding NaN or infinity, checked a batch at a time.  # (n, dim) -> (bad,)"""
    bad = [
        start + np.flatnonzero(~np.isfinite(vectors[start : start + batch_size]).all(axis=1))
        for start in range(0, len(vectors), batch_size)
    ]
    return np.concatenate(bad) if bad else np.zeros(0, np.int64)
