"""The inverted-file index (IVF): approximate search that scans the lists nearest to each query."""

from __future__ import annotations

import faiss
import numpy as np

from finetuner_core.evaluation.index.base import Index


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
