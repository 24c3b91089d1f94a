"""Synthetic embeddings for the search benchmark: clustered unit vectors and noisy copies as queries.

The corpus is ``clusters`` random directions, each vector a centre plus Gaussian noise, L2-normalised, as
sentence embeddings of a topical collection are. Each query is a noisy copy of one corpus vector (its source),
which makes a (query, source) pair: the relevance the metrics are computed against. Everything is generated
in chunks from seeded generators, so memory holds the output and nothing more.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SyntheticSet:
    corpus: np.ndarray  # (n, dim) float32, unit rows
    queries: np.ndarray  # (q, dim) float32, unit rows
    sources: np.ndarray  # (q,) int64: the corpus row each query was made from


def _unit(rows: np.ndarray) -> np.ndarray:
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    return rows


def clustered_set(
    corpus_size: int,
    num_queries: int,
    dim: int,
    clusters: int = 1000,
    spread: float = 1.0,
    query_noise: float = 3.0,
    seed: int = 0,
    chunk: int = 65536,
) -> SyntheticSet:
    """``corpus_size`` clustered unit vectors and ``num_queries`` queries made from random corpus rows.

    ``spread`` and ``query_noise`` are noise norms relative to the unit centre.
    """
    rng = np.random.default_rng(seed)
    centres = _unit(rng.standard_normal((clusters, dim), dtype=np.float32))
    corpus = np.empty((corpus_size, dim), np.float32)
    for start in range(0, corpus_size, chunk):
        part = np.random.default_rng([seed, start]).standard_normal((min(chunk, corpus_size - start), dim), np.float32)
        labels = np.random.default_rng([seed, start, 1]).integers(clusters, size=len(part))
        corpus[start : start + len(part)] = _unit(centres[labels] + part * float(spread / np.sqrt(dim)))
    sources = rng.choice(corpus_size, num_queries, replace=False)
    noise = rng.standard_normal((num_queries, dim), dtype=np.float32) * float(query_noise / np.sqrt(dim))
    queries = _unit(corpus[sources] + noise)
    assert corpus.dtype == queries.dtype == np.float32
    return SyntheticSet(corpus, queries, sources)
