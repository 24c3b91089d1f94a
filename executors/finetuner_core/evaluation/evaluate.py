"""Label-relevance retrieval evaluation: every item is a query against all the others.

An index item is relevant to a query when it has the query's label; the query itself is never counted.
"""

from __future__ import annotations

from collections import Counter
from typing import Protocol

import numpy as np

from finetuner_core.data.records import LabeledText
from finetuner_core.evaluation.index import FlatIndex
from finetuner_core.evaluation.metrics import retrieval_metrics

DEFAULT_KS = (1, 10, 20)


class Encoder(Protocol):
    def encode(self, texts: list[str]) -> np.ndarray: ...


def evaluate_labeled(model: Encoder, records: list[LabeledText], ks: tuple[int, ...] = DEFAULT_KS) -> dict:
    """Encode ``records`` with ``model`` and score leave-one-out retrieval by label."""
    embeddings = model.encode([record.text for record in records])
    return label_retrieval_metrics(embeddings, [record.label for record in records], ks)


def label_retrieval_metrics(
    embeddings: np.ndarray, labels: list[str], ks: tuple[int, ...] = DEFAULT_KS
) -> dict:
    """Metrics for each item as a query against every other item.  # embeddings: (n, dim)"""
    if len(embeddings) != len(labels):
        raise ValueError(f"{len(embeddings)} embeddings but {len(labels)} labels")
    if len(labels) < 2:
        raise ValueError("label evaluation needs at least 2 items")
    ks = tuple(k for k in ks if k < len(labels)) or (len(labels) - 1,)
    index = FlatIndex(embeddings, metric="cosine")
    _, ids = index.search(embeddings, max(ks) + 1)
    ids = _drop_self(ids, max(ks))
    label_array = np.asarray(labels, dtype=object)
    hits = label_array[ids] == label_array[:, None]
    counts = Counter(labels)
    num_relevant = np.array([counts[label] - 1 for label in labels])
    return retrieval_metrics(hits, num_relevant, ks)


def _drop_self(ids: np.ndarray, k: int) -> np.ndarray:
    """Remove each query's own id from its results and keep ``k`` results.  # (q, k + 1) -> (q, k)"""
    own = np.arange(len(ids))[:, None]
    is_other = ids != own
    # rows where the query itself fell outside the k + 1 results keep their first k results
    is_other[is_other.all(axis=1), -1] = False
    return ids[is_other].reshape(len(ids), k)
