"""The only module that knows FAISS: an exact index (Flat) and two approximate ones (IVF, HNSW).

Every index takes float32 vectors ``# (n, dim)`` and answers ``search(queries, k)`` with scores and ids
``# (q, k)``, searched in batches of queries so that memory stays bounded. A higher score is always closer:

- ``cosine``: vectors are L2-normalised, the score is their inner product (cosine similarity)
- ``inner_product``: the raw inner product
- ``l2``: the negated squared Euclidean distance

Ties: results are ordered by score, then by id (lower id first). FAISS does not say which of several items tied
at the k-th place it keeps, so the exact (Flat) index asks for k + 1 results and, for the rare queries whose
k-th and (k+1)-th scores are equal, searches deeper until that score ends and keeps the lower ids. A Flat
index's top k is therefore exactly the first k of the full ranking by (score descending, id ascending):
deterministic, and equal to a NumPy brute force that sorts stably. A tie is a tie of the float32 scores as
computed. An approximate index orders what it finds the same way; it may return fewer than k results for a
query, and the missing places hold id -1 and score -inf.

On a machine with a FAISS GPU build and a GPU, Flat and IVF indexes search on the GPU (``use_gpu=None`` means
"when available"); HNSW has no GPU version in FAISS and always searches on the CPU.
"""

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

    def vectors(self) -> np.ndarray:
        """A read-only view of the stored vectors (normalised for cosine), without a copy.  # (n, dim)"""
        if not isinstance(self._index, faiss.IndexFlat):
            raise TypeError(f"a {self.kind} index does not keep its vectors as one matrix")
        view = faiss.rev_swig_ptr(self._index.get_xb(), len(self) * self.dim).reshape(len(self), self.dim)
        view.flags.writeable = False
        return view

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


class FlatIndex(Index):
    """Exact search: every query is scored against every vector.

    On the CPU the scores come from NumPy's matrix multiply, ``corpus_block`` vectors at a time, and FAISS's
    result heaps keep each query's best; this measured 1.5x faster than FAISS's own exact search, whose wheel
    brings an older BLAS (see docs/BENCHMARKS.md). Memory: one block of scores, batch x ``corpus_block`` floats.
    On a GPU, FAISS searches.
    """

    kind = "flat"
    exact = True
    corpus_block = 8192

    def _add(self, vectors: np.ndarray, batch_size: int = 65536) -> None:
        super()._add(vectors, batch_size)
        self._squared_norms = None

    def _top_k(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        if self._on_gpu(k):
            return super()._top_k(queries, k)
        scores, ids = np.empty((len(queries), k), np.float32), np.empty((len(queries), k), np.int64)
        heap = faiss.float_minheap_array_t()
        heap.nh, heap.k, heap.val, heap.ids = len(queries), k, faiss.swig_ptr(scores), faiss.swig_ptr(ids)
        heap.heapify()
        vectors, block = self.vectors(), np.empty(len(queries) * self.corpus_block, np.float32)
        for start in range(0, len(self), self.corpus_block):
            part = vectors[start : start + self.corpus_block]
            out = block[: len(queries) * len(part)].reshape(len(queries), len(part))  # (q, block)
            np.matmul(queries, part.T, out=out)
            if self.metric == "l2":  # -|q - x|^2 = 2 q.x - |x|^2 - |q|^2, the last term added at the end
                out *= 2
                out -= self._norms()[start : start + len(part)]
            heap.addn(len(part), faiss.swig_ptr(out), start, 0, len(queries))
        heap.reorder()
        if self.metric == "l2":
            scores -= np.einsum("ij,ij->i", queries, queries)[:, None]
        return scores, ids

    def _norms(self) -> np.ndarray:
        """Squared norms of the stored vectors, computed once.  # (n,)"""
        if self._squared_norms is None:
            vectors = self.vectors()
            parts = [vectors[i : i + 65536] for i in range(0, len(self), 65536)]
            self._squared_norms = np.concatenate([np.einsum("ij,ij->i", part, part) for part in parts])
        return self._squared_norms

    def _create(self, vectors: np.ndarray) -> faiss.Index:
        return faiss.IndexFlat(self.dim, self.faiss_metric)


class IVFIndex(Index):
    """Inverted lists: k-means puts the vectors in ``nlist`` lists; a query scans its ``nprobe`` nearest lists.

    ``nlist`` defaults to about sqrt(n) (at least 39 training vectors per list); the k-means trains on
    ``train_size`` vectors (default 64 per list) drawn with ``seed``. More ``nprobe``: higher recall, slower.
    """

    kind = "ivf"

    def __init__(
        self,
        vectors: np.ndarray,
        metric: str = "cosine",
        nlist: int | None = None,
        nprobe: int = 16,
        train_size: int | None = None,
        seed: int = 0,
        use_gpu: bool | None = None,
    ):
        self._options = {"nlist": nlist, "train_size": train_size, "seed": seed}
        super().__init__(vectors, metric, use_gpu)
        self.nprobe = nprobe

    @property
    def nlist(self) -> int:
        return self._index.nlist

    @property
    def nprobe(self) -> int:
        return self._index.nprobe

    @nprobe.setter
    def nprobe(self, value: int) -> None:
        if value < 1:
            raise ValueError(f"nprobe must be >= 1, got {value}")
        self._index.nprobe = min(value, self.nlist)
        self._gpu_index = None

    def _create(self, vectors: np.ndarray) -> faiss.Index:
        n = len(vectors)
        nlist = self._options["nlist"] or max(1, min(round(n**0.5), n // 39))
        if not 1 <= nlist <= n:
            raise ValueError(f"nlist={nlist} must be between 1 and the number of vectors ({n})")
        train_size = min(n, self._options["train_size"] or 64 * nlist)
        sample = np.random.default_rng(self._options["seed"]).choice(n, train_size, replace=False)
        quantizer = faiss.IndexFlat(self.dim, self.faiss_metric)
        index = faiss.IndexIVFFlat(quantizer, self.dim, nlist, self.faiss_metric)
        index.cp.seed = self._options["seed"]
        index.train(self._prepare(vectors[np.sort(sample)]))
        return index


class HNSWIndex(Index):
    """A navigable small-world graph: ``m`` links per vector, built with ``ef_construction`` candidates.

    A query explores ``ef_search`` candidates (at least k): more is higher recall and slower. CPU only.
    """

    kind = "hnsw"
    gpu_capable = False

    def __init__(
        self,
        vectors: np.ndarray,
        metric: str = "cosine",
        m: int = 32,
        ef_construction: int = 100,
        ef_search: int = 64,
        use_gpu: bool | None = None,
    ):
        if m < 2 or ef_construction < 1:
            raise ValueError(f"m must be >= 2 and ef_construction >= 1, got m={m}, ef_construction={ef_construction}")
        self._options = {"m": m, "ef_construction": ef_construction}
        super().__init__(vectors, metric, use_gpu)
        self.ef_search = ef_search

    @property
    def ef_search(self) -> int:
        return self._index.hnsw.efSearch

    @ef_search.setter
    def ef_search(self, value: int) -> None:
        if value < 1:
            raise ValueError(f"ef_search must be >= 1, got {value}")
        self._index.hnsw.efSearch = value

    def _search_params(self, k: int) -> faiss.SearchParameters:
        return faiss.SearchParametersHNSW(efSearch=max(self.ef_search, k))

    def _create(self, vectors: np.ndarray) -> faiss.Index:
        index = faiss.IndexHNSWFlat(self.dim, self._options["m"], self.faiss_metric)
        index.hnsw.efConstruction = self._options["ef_construction"]
        return index


INDEXES: dict[str, type[Index]] = {"flat": FlatIndex, "ivf": IVFIndex, "hnsw": HNSWIndex}


def build_index(kind: str, vectors: np.ndarray, metric: str = "cosine", **options) -> Index:
    """An index of ``kind`` (see :data:`INDEXES`) over ``vectors``, with that kind's ``options``."""
    if kind not in INDEXES:
        raise ValueError(f"unknown index {kind!r}; allowed: {', '.join(INDEXES)}")
    return INDEXES[kind](vectors, metric, **options)


def neighbour_recall(ids: np.ndarray, exact_ids: np.ndarray) -> float:
    """Share of the exact top k that an approximate search found (k-recall@k).  # (q, k), (q, k)"""
    if ids.shape != exact_ids.shape:
        raise ValueError(f"result shapes differ: {ids.shape} and {exact_ids.shape}")
    found = [len(np.intersect1d(row[row >= 0], exact)) for row, exact in zip(ids, exact_ids, strict=True)]
    return float(np.sum(found) / exact_ids.size)


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
