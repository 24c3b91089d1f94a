"""The exact index: every query scored against every vector."""

from __future__ import annotations

import faiss
import numpy as np

from finetuner_core.evaluation.index.base import Index


class FlatIndex(Index):
    """Exact search: every query is scored against every vector.

    On the CPU the scores come from NumPy's matrix multiply, ``corpus_block`` vectors at a time, and FAISS's
    result heaps keep each query's best; this measured faster than FAISS's own exact search, whose wheel brings
    an older BLAS (see docs/BENCHMARKS.md). Memory: one block of scores, batch x ``corpus_block`` floats.
    On a GPU, FAISS searches.
    """

    kind = "flat"
    exact = True
    corpus_block = 8192

    def vectors(self) -> np.ndarray:
        """A read-only view of the stored vectors (normalised for cosine), without a copy.  # (n, dim)"""
        view = faiss.rev_swig_ptr(self._index.get_xb(), len(self) * self.dim).reshape(len(self), self.dim)
        view.flags.writeable = False
        return view

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
