"""What makes an index item relevant to a query, and the judging of retrieved ids against it.

- :class:`LabelRelevance`: an item is relevant when it has the query's label (grade 1).
- :class:`PairRelevance`: the relevant items of each query are listed, as (query, item) pairs with a grade
  (1 for plain pairs such as a query-document CSV; any positive number for graded relevance).

Queries and index items are positions: query ``q`` is row ``q`` of the query embeddings, item ``i`` row ``i`` of
the index. ``own[q]`` is the index position of the query's own item when the query is also in the index
(-1 otherwise): it is never relevant to itself and never counted among its relevant items, whatever its label
or pairs say. Cross-modal evaluation (text queries against an image index) is the same, with queries and index
embedded by different encoders.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Protocol

import numpy as np

from finetuner_core.evaluation.errors import EvaluationError
from finetuner_core.evaluation.metrics import Judgements


class Relevance(Protocol):
    kind: str
    num_queries: int
    num_index: int
    own: np.ndarray  # (q,) int64, -1 where the query is not in the index

    def num_relevant(self) -> np.ndarray:
        """Relevant index items of each query, its own item excluded.  # (q,) int64"""
        ...

    def judge(self, ids: np.ndarray) -> Judgements:
        """Judge retrieved ids ``# (q, d)`` (-1: no result)."""
        ...


def no_own(num_queries: int) -> np.ndarray:
    """``own`` for queries that are not in the index.  # (q,)"""
    return np.full(num_queries, -1, np.int64)


class LabelRelevance:
    """Relevant when the index item has the query's label."""

    kind = "label"

    def __init__(
        self, query_labels: Sequence[Hashable], index_labels: Sequence[Hashable], own: np.ndarray | None = None
    ):
        codes: dict[Hashable, int] = {}
        self.query_labels, self.index_labels = list(query_labels), list(index_labels)
        self._query = _codes(query_labels, codes, "queries")
        self._index = _codes(index_labels, codes, "index items")
        self.num_queries, self.num_index = len(self._query), len(self._index)
        self.own = _check_own(own, len(self._query), len(self._index))
        is_own = (self.own >= 0) & (self._index[np.maximum(self.own, 0)] == self._query)
        self._num_relevant = np.bincount(self._index, minlength=len(codes))[self._query] - is_own

    def num_relevant(self) -> np.ndarray:
        return self._num_relevant

    def judge(self, ids: np.ndarray) -> Judgements:
        ids = _check_ids(ids, len(self._query), len(self._index))
        found = ids >= 0
        hits = found & (self._index[np.where(found, ids, 0)] == self._query[:, None]) & (ids != self.own[:, None])
        return Judgements.binary(hits, self._num_relevant)


class PairRelevance:
    """Relevant when listed: ``query_ids[p]`` finds ``index_ids[p]`` relevant with grade ``grades[p]`` (> 0)."""

    def __init__(
        self,
        num_queries: int,
        num_index: int,
        query_ids: np.ndarray,
        index_ids: np.ndarray,
        grades: np.ndarray | None = None,
        own: np.ndarray | None = None,
    ):
        query_ids, index_ids = np.asarray(query_ids, np.int64), np.asarray(index_ids, np.int64)
        grades = np.ones(len(query_ids)) if grades is None else np.asarray(grades, np.float64)
        _check_pairs(num_queries, num_index, query_ids, index_ids, grades)
        self.num_queries, self.num_index = num_queries, num_index
        self.own = _check_own(own, num_queries, num_index)
        self.kind = "pairs" if np.all(grades == 1) else "graded"
        not_own = index_ids != self.own[query_ids]
        query_ids, index_ids, grades = query_ids[not_own], index_ids[not_own], grades[not_own]
        keys = query_ids * num_index + index_ids
        order = np.argsort(keys, kind="stable")
        self._keys, self._grades = keys[order], grades[order]
        self._num_relevant = np.bincount(query_ids, minlength=num_queries).astype(np.int64)
        self._by_grade = np.lexsort((-grades, query_ids))  # pairs by query, highest grade first
        self._query_ids, self._pair_grades = query_ids, grades

    def num_relevant(self) -> np.ndarray:
        return self._num_relevant

    def judge(self, ids: np.ndarray) -> Judgements:
        ids = _check_ids(ids, self.num_queries, self.num_index)
        gains = np.zeros(ids.shape)
        if len(self._keys):
            keys = np.arange(len(ids))[:, None] * self.num_index + ids
            at = np.minimum(np.searchsorted(self._keys, keys), len(self._keys) - 1)
            listed = (ids >= 0) & (self._keys[at] == keys)
            gains[listed] = self._grades[at[listed]]
        return Judgements(gains, self._num_relevant, self._ideal(ids.shape[1]))

    def _ideal(self, depth: int) -> np.ndarray:
        """Each query's grades, highest first, in its first ``depth`` places.  # (q, depth)"""
        queries = self._query_ids[self._by_grade]
        starts = np.searchsorted(queries, np.arange(self.num_queries))
        rank = np.arange(len(queries)) - starts[queries]
        fits = rank < depth
        ideal = np.zeros((self.num_queries, depth))
        ideal[queries[fits], rank[fits]] = self._pair_grades[self._by_grade][fits]
        return ideal


def _codes(labels: Sequence[Hashable], codes: dict[Hashable, int], what: str) -> np.ndarray:
    missing = [i for i, label in enumerate(labels) if label is None]
    if missing:
        raise EvaluationError(f"{what} without a label: {len(missing)} (positions {missing[:5]})")
    return np.fromiter((codes.setdefault(label, len(codes)) for label in labels), np.int64, len(labels))


def _check_own(own: np.ndarray | None, num_queries: int, num_index: int) -> np.ndarray:
    own = no_own(num_queries) if own is None else np.asarray(own, np.int64)
    if own.shape != (num_queries,) or (own >= num_index).any() or (own < -1).any():
        raise EvaluationError(f"own positions must be {num_queries} values in [-1, {num_index}), got {own.shape}")
    return own


def _check_ids(ids: np.ndarray, num_queries: int, num_index: int) -> np.ndarray:
    ids = np.asarray(ids, np.int64)
    if ids.ndim != 2 or len(ids) != num_queries:
        raise EvaluationError(f"retrieved ids {ids.shape} do not match the {num_queries} queries")
    if (ids >= num_index).any() or (ids < -1).any():
        raise EvaluationError(f"retrieved ids must lie in [-1, {num_index})")
    return ids


def _check_pairs(
    num_queries: int, num_index: int, query_ids: np.ndarray, index_ids: np.ndarray, grades: np.ndarray
) -> None:
    if not (query_ids.shape == index_ids.shape == grades.shape) or query_ids.ndim != 1:
        raise EvaluationError(
            f"pairs do not line up: {query_ids.shape} queries, {index_ids.shape} items, {grades.shape} grades"
        )
    if len(query_ids) and (query_ids.min() < 0 or query_ids.max() >= num_queries):
        raise EvaluationError(f"pair query positions must lie in [0, {num_queries})")
    if len(index_ids) and (index_ids.min() < 0 or index_ids.max() >= num_index):
        raise EvaluationError(f"pair index positions must lie in [0, {num_index})")
    bad = np.flatnonzero(~np.isfinite(grades) | (grades <= 0))
    if len(bad):
        raise EvaluationError(f"grades must be finite and > 0 (pairs {bad[:5].tolist()}); leave irrelevant items out")
    keys = query_ids * num_index + index_ids
    unique, counts = np.unique(keys, return_counts=True)
    if (counts > 1).any():
        first = unique[counts > 1][0]
        raise EvaluationError(
            f"{int((counts > 1).sum())} (query, item) pairs are listed more than once, e.g. query "
            f"{first // num_index} and item {first % num_index}"
        )
