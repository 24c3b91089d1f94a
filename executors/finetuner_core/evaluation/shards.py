"""Exact top-k search over an index split into shards, and the merge that gives the global top k.

A large index is split into ``shards`` contiguous slices (:func:`shard_range`); each shard searches its own slice
and answers its top k with global ids (:func:`search_slice`); :func:`merge_top_k` merges the shards' answers
into the global top k. The result is exactly the unsharded search's, ties included:

- **Order**: by score (higher first), then by id (lower first): the order of the Flat index
  (:mod:`finetuner_core.evaluation.index`).
- **Scores**: a pair's score must not depend on which other vectors share its index. FAISS's scores do (its
  BLAS and non-BLAS paths round differently), so FAISS only finds candidates and every candidate is scored
  again, pair by pair, in float64 from the float32 vectors (:func:`pair_scores`): the same pair gets the same
  score in every shard and unsharded, and identical vectors tie exactly.
- **Completeness**: FAISS's float32 score of an item is within a bound (:func:`score_margin`) of its exact
  score, so a shard searches deeper until the last FAISS candidate scores below the k-th exact score by more
  than that bound: no item beyond the candidates can reach the top k.

Every item's global top-k place is decided by its own score and id only, so the global top k is contained in
the union of the shards' top k, and sorting that union by (score, id) gives it. Slices start at multiples of
``block`` items, so that a model encodes every item in the same batch whether the index is sharded or not.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from finetuner_core.evaluation.errors import EvaluationError
from finetuner_core.evaluation.index import METRIC_TYPES, FlatIndex

ENCODE_BLOCK = 256  # items encoded together; slices start at a multiple of it
EXTRA_DEPTH = 16  # candidates beyond k searched at first
UNIT_ROUNDOFF = 2.0**-24  # float32


def shard_range(total: int, shards: int, shard: int, block: int = ENCODE_BLOCK) -> range:
    """The index positions shard ``shard`` of ``shards`` holds: contiguous, whole blocks, sizes within a block."""
    if shards < 1 or not 0 <= shard < shards:
        raise EvaluationError(f"shard {shard} of {shards}: the shard id must be between 0 and shards - 1")
    if total < 0 or block < 1:
        raise EvaluationError(f"cannot split {total} items in blocks of {block}")
    blocks = -(-total // block)
    first, last = (shard * blocks) // shards, ((shard + 1) * blocks) // shards
    return range(min(first * block, total), min(last * block, total))


def encode_blocks(encode, inputs: Sequence[Any], block: int = ENCODE_BLOCK) -> np.ndarray:
    """``encode`` applied to ``inputs`` one block at a time.  # (n, dim) float32"""
    if not len(inputs):
        raise EvaluationError("nothing to encode")
    parts = [
        np.asarray(encode(list(inputs[start : start + block])), np.float32) for start in range(0, len(inputs), block)
    ]
    return np.concatenate(parts)


def prepare(vectors: np.ndarray, metric: str) -> np.ndarray:
    """Vectors as the metric compares them: float32, L2-normalised row by row for cosine.  # (n, dim)"""
    if metric not in METRIC_TYPES:
        raise EvaluationError(f"unknown metric {metric!r}; allowed: {', '.join(METRIC_TYPES)}")
    vectors = np.ascontiguousarray(vectors, np.float32)
    if vectors.ndim != 2 or not vectors.shape[0] or not vectors.shape[1]:
        raise EvaluationError(f"vectors must be a non-empty 2-d array, got shape {vectors.shape}")
    if not np.isfinite(vectors).all():
        raise EvaluationError("vectors hold NaN or infinite values")
    if metric != "cosine":
        return vectors
    norms = np.sqrt(np.einsum("nd,nd->n", vectors.astype(np.float64), vectors.astype(np.float64)))
    return (vectors / np.where(norms > 0, norms, 1.0)[:, None]).astype(np.float32)


def pair_scores(queries: np.ndarray, candidates: np.ndarray, metric: str) -> np.ndarray:
    """The exact score of each query with each of its candidates, in float64, pair by pair (the same pair scores
    the same whatever else is computed with it). Inputs are prepared vectors.  # (q, d), (q, m, d) -> (q, m)"""
    c = np.ascontiguousarray(candidates, np.float64)
    q = np.ascontiguousarray(np.broadcast_to(queries.astype(np.float64)[:, None, :], c.shape))
    terms = (c - q) ** 2 if metric == "l2" else c * q
    return -terms.sum(axis=-1) if metric == "l2" else terms.sum(axis=-1)


def score_margin(queries: np.ndarray, vectors: np.ndarray, metric: str) -> np.ndarray:
    """A bound on the difference between FAISS's float32 score and the exact score, per query.  # (q,)"""
    dim = queries.shape[1]
    gamma = 2.0 * (dim + 2) * UNIT_ROUNDOFF
    query_norms = np.linalg.norm(queries.astype(np.float64), axis=1)
    largest = float(np.linalg.norm(vectors.astype(np.float64), axis=1).max())
    if metric == "l2":
        return 2.0 * gamma * (query_norms + largest) ** 2 + 1e-30
    return gamma * query_norms * largest + 1e-30


def search_slice(
    vectors: np.ndarray, queries: np.ndarray, k: int, metric: str = "cosine", offset: int = 0, batch_size: int = 256
) -> tuple[np.ndarray, np.ndarray]:
    """The exact top ``min(k, n)`` of each query in ``vectors`` (a slice starting at global position
    ``offset``): exact scores and global ids, by (score, id).  # (n, d), (q, d) -> (q, k'), (q, k')"""
    if k < 1:
        raise EvaluationError(f"k={k} must be at least 1")
    vectors, queries = prepare(vectors, metric), prepare(queries, metric)
    if queries.shape[1] != vectors.shape[1]:
        raise EvaluationError(f"query dimension {queries.shape[1]} does not match index dimension {vectors.shape[1]}")
    index = FlatIndex(vectors, "l2" if metric == "l2" else "inner_product", use_gpu=False)
    margins = score_margin(queries, vectors, metric)
    k = min(k, len(vectors))
    scores, ids = np.empty((len(queries), k), np.float64), np.empty((len(queries), k), np.int64)
    for start in range(0, len(queries), batch_size):
        rows = slice(start, start + batch_size)
        scores[rows], ids[rows] = _exact_batch(index, vectors, queries[rows], k, metric, margins[rows])
    return scores, ids + offset


def _exact_batch(index: FlatIndex, vectors, queries, k: int, metric: str, margins) -> tuple[np.ndarray, np.ndarray]:
    """Search deeper for the queries whose candidates may not hold their exact top k yet."""
    scores, ids = np.empty((len(queries), k), np.float64), np.empty((len(queries), k), np.int64)
    pending, depth = np.arange(len(queries)), min(k + EXTRA_DEPTH, len(vectors))
    while len(pending):
        found, candidates = index.search(queries[pending], depth)
        exact = pair_scores(queries[pending], vectors[candidates], metric)
        order = np.lexsort((candidates, -exact), axis=-1)[:, :k]
        top, top_ids = np.take_along_axis(exact, order, -1), np.take_along_axis(candidates, order, -1)
        settled = (depth == len(vectors)) | (found[:, -1].astype(np.float64) + margins[pending] < top[:, -1])
        scores[pending[settled]], ids[pending[settled]] = top[settled], top_ids[settled]
        pending, depth = pending[~settled], min(2 * depth, len(vectors))
    return scores, ids


def merge_top_k(parts: Sequence[tuple[np.ndarray, np.ndarray]], k: int) -> tuple[np.ndarray, np.ndarray]:
    """The global top ``k`` of the shards' answers ``[(scores, global ids), ...]``, by (score, id); places no
    shard filled hold id -1 and score -inf.  # [(q, k_i), (q, k_i)] -> (q, k), (q, k)"""
    if not parts:
        raise EvaluationError("no shard answered")
    rows = {len(scores) for scores, _ in parts}
    if len(rows) != 1:
        raise EvaluationError(f"the shards answered for different numbers of queries: {sorted(rows)}")
    scores = np.concatenate([np.asarray(s, np.float64) for s, _ in parts], axis=1)
    ids = np.concatenate([np.asarray(i, np.int64) for _, i in parts], axis=1)
    scores = np.where(ids < 0, -np.inf, scores)
    order = np.lexsort((ids, -scores, ids < 0), axis=-1)[:, :k]
    merged_scores, merged_ids = np.take_along_axis(scores, order, -1), np.take_along_axis(ids, order, -1)
    if merged_ids.shape[1] < k:
        pad = k - merged_ids.shape[1]
        merged_scores = np.pad(merged_scores, ((0, 0), (0, pad)), constant_values=-np.inf)
        merged_ids = np.pad(merged_ids, ((0, 0), (0, pad)), constant_values=-1)
    return merged_scores, merged_ids


def sharded_search(
    vectors: np.ndarray, queries: np.ndarray, k: int, shards: int, metric: str = "cosine", block: int = ENCODE_BLOCK
) -> tuple[np.ndarray, np.ndarray]:
    """Every shard's search of its slice, then the merge (in one process).  # (n, d), (q, d) -> (q, k), (q, k)"""
    parts = []
    for shard in range(shards):
        positions = shard_range(len(vectors), shards, shard, block)
        if len(positions):
            parts.append(search_slice(vectors[positions.start : positions.stop], queries, k, metric, positions.start))
    return merge_top_k(parts, min(k, len(vectors)))


@dataclass
class ShardAnswer:
    """One shard's answer to a search: its top k of each query, with global ids."""

    shard: int
    shards: int
    total: int  # items in the whole index
    scores: np.ndarray  # (q, k') float64
    ids: np.ndarray  # (q, k') int64, global

    def to_payload(self) -> dict[str, Any]:
        return {
            "shard": self.shard,
            "shards": self.shards,
            "total": self.total,
            "scores": self.scores.tolist(),
            "ids": self.ids.tolist(),
        }

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> ShardAnswer:
        try:
            rows = len(payload["ids"])
            ids = np.asarray(payload["ids"], np.int64).reshape(rows, -1 if rows and payload["ids"][0] else 0)
            scores = np.asarray(payload["scores"], np.float64).reshape(ids.shape)
            return cls(int(payload["shard"]), int(payload["shards"]), int(payload["total"]), scores, ids)
        except (KeyError, TypeError, ValueError) as exc:
            raise EvaluationError(f"not a shard's search answer: {exc}") from None


def merge_answers(answers: Sequence[ShardAnswer], k: int) -> tuple[np.ndarray, np.ndarray]:
    """The global top ``k`` from every shard's answer; refused when a shard is missing or answered twice."""
    if not answers:
        raise EvaluationError("no shard answered the search")
    counts = {(a.shards, a.total) for a in answers}
    if len(counts) != 1:
        raise EvaluationError(f"the answers come from different splits (shards, items): {sorted(counts)}")
    shards, total = counts.pop()
    seen = sorted(a.shard for a in answers)
    if seen != list(range(shards)):
        missing = sorted(set(range(shards)) - set(seen))
        repeated = sorted({s for s in seen if seen.count(s) > 1})
        if missing:
            raise EvaluationError(
                f"search failed: shard {', '.join(map(str, missing))} of {shards} did not answer (is every evaluator "
                "shard running? the Flow's log says why); no partial answer is given"
            )
        raise EvaluationError(f"search failed: shard {', '.join(map(str, repeated))} of {shards} answered twice")
    return merge_top_k([(a.scores, a.ids) for a in answers], min(k, total))
