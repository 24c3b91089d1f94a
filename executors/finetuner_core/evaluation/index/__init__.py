"""The only package that knows FAISS: an exact index (Flat) and two approximate ones (IVF, HNSW).

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

import numpy as np

from finetuner_core.evaluation.index.base import METRIC_TYPES, Index, gpu_available, non_finite_rows
from finetuner_core.evaluation.index.flat import FlatIndex
from finetuner_core.evaluation.index.hnsw import HNSWIndex
from finetuner_core.evaluation.index.ivf import IVFIndex

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


__all__ = [
    "INDEXES",
    "METRIC_TYPES",
    "FlatIndex",
    "HNSWIndex",
    "IVFIndex",
    "Index",
    "build_index",
    "gpu_available",
    "neighbour_recall",
    "non_finite_rows",
]
