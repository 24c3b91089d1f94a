"""The exact index: every query scored against every vector."""

from __future__ import annotations

import faiss
import numpy as np

from finetuner_core.evaluation.index.base import Index


class FlatIndex(Index):
    """Exact search: FAISS scores every query against every vector (a BLAS matrix multiply, a block at a time)
    and keeps each query's best; ties at the k-th place are settled by id (see the package's notes)."""

    kind = "flat"
    exact = True

    def vectors(self) -> np.ndarray:
        """A read-only view of the stored vectors (normalised for cosine), without a copy.  # (n, dim)"""
        view = faiss.rev_swig_ptr(self._index.get_xb(), len(self) * self.dim).reshape(len(self), self.dim)
        view.flags.writeable = False
        return view

    def _create(self, vectors: np.ndarray) -> faiss.Index:
        return faiss.IndexFlat(self.dim, self.faiss_metric)
