"""The HNSW graph index: approximate search by walking a graph of near neighbours."""

from __future__ import annotations

import faiss
import numpy as np

from finetuner_core.evaluation.index.base import Index


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
