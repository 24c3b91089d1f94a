"""Synthetic embeddings for the search benchmark: clustered unit vectors, and noisy copies of them as queries.

The corpus is ``clusters`` random directions, each vector a centre plus Gaussian noise, L2-normalised, as
sentence embeddings of a topical collection are. Each query is a noisy copy of one corpus vector (its source),
which makes a (query, source) pair: the relevance the metrics are computed against. The query noise sets how
hard the queries are: ``near`` queries (noise 1) lie among the corpus vectors, ``far`` ones (noise 3) away from
all of them. Everything is generated in chunks from seeded generators, so memory holds the output only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

QUERY_NOISE = {"far": 3.0, "near": 1.0}


@dataclass(frozen=True)
class Queries:
    vectors: np.ndarray  # (q, dim) float32, unit rows
    sources: np.ndarray  # (q,) int64: the corpus row each query was made from


def _unit(rows: np.ndarray) -> np.ndarray:
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    return rows


def clustered_corpus(
    size: int, dim: int, clusters: int = 1000, spread: float = 1.0, seed: int = 0, chunk: int = 65536
) -> np.ndarray:
    """``size`` unit vectors around ``clusters`` centres; ``spread`` is the noise norm relative to a centre.

    # (size, dim) float32
    """
    centres = _unit(np.random.default_rng(seed).standard_normal((clusters, dim), dtype=np.float32))
    corpus = np.empty((size, dim), np.float32)
    for start in range(0, size, chunk):
        noise = np.random.default_rng([seed, start]).standard_normal((min(chunk, size - start), dim), np.float32)
        labels = np.random.default_rng([seed, start, 1]).integers(clusters, size=len(noise))
        corpus[start : start + len(noise)] = _unit(centres[labels] + noise * float(spread / np.sqrt(dim)))
    return corpus


def noisy_queries(corpus: np.ndarray, count: int, noise: float, seed: int = 0) -> Queries:
    """``count`` queries, each a distinct corpus row plus noise of norm ``noise``, normalised."""
    rng = np.random.default_rng([seed, 2])
    sources = rng.choice(len(corpus), count, replace=False)
    jitter = rng.standard_normal((count, corpus.shape[1]), dtype=np.float32) * float(noise / np.sqrt(corpus.shape[1]))
    vectors = _unit(corpus[sources] + jitter)
    assert vectors.dtype == np.float32
    return Queries(vectors, sources)
