"""Sample queries with their top results, to look at next to the metrics (Finetuner's display examples).

One model's examples are queries spread evenly over the query set (:func:`display_examples`). Two models
compared (e.g. a run's base model and its tuned model) show the queries whose top results changed most, each
with both rankings side by side (:func:`changed_examples`). Every result carries its relevance grade (0: not
relevant); in a comparison, queries and results also carry their label (labeled data) and, for images, a PNG
thumbnail when asked for one (``thumbnail_px``).
"""

from __future__ import annotations

import base64
import io
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from finetuner_core.evaluation.metrics import Judgements
from finetuner_core.evaluation.relevance import LabelRelevance, Relevance

Describe = Callable[[int], dict[str, Any]]


@dataclass(frozen=True)
class Ranking:
    """Every query's retrieved results under one model, what the examples are drawn from.

    ``ids`` / ``scores`` / ``gains`` hold each query's results in rank order (-1: none); ``count`` and ``k``: how
    many example queries are shown, and how many results of each.  # ids, scores, gains: (q, depth)
    """

    ids: np.ndarray
    scores: np.ndarray
    gains: np.ndarray
    num_relevant: np.ndarray
    describe_query: Describe
    describe_item: Describe
    count: int
    k: int

    def results(self, q: int) -> list[dict[str, Any]]:
        """The top ``k`` results of query ``q``: rank, the item's description, score and relevance grade."""
        top = zip(self.ids[q, : self.k], self.scores[q, : self.k], self.gains[q, : self.k], strict=True)
        return [
            {"rank": rank + 1, **self.describe_item(int(i)), "score": float(s), "relevance": float(g)}
            for rank, (i, s, g) in enumerate(top)
            if i >= 0
        ]

    def relevant_shown(self, q: int) -> int:
        """How many of query ``q``'s top ``k`` results are relevant."""
        return int((self.gains[q, : self.k] > 0).sum())


def example_positions(num_queries: int, count: int) -> np.ndarray:
    """``count`` query positions spread evenly over the queries, first and last included.  # (<= count,)"""
    if count <= 0 or num_queries == 0:
        return np.zeros(0, np.int64)
    return np.unique(np.linspace(0, num_queries - 1, min(count, num_queries)).round().astype(np.int64))


def display_content(value: Any) -> Any:
    """A JSON-friendly view of an input: texts and references as they are, images and arrays by their size."""
    if value is None or isinstance(value, str | int | float):
        return value
    if _is_image(value):
        return f"image {value.size[0]}x{value.size[1]}"
    return f"array {tuple(np.shape(value))}"


def thumbnail(value: Any, size: int) -> str | None:
    """A PNG data URI of an image input shrunk to fit ``size`` pixels; None for other inputs or ``size=0``."""
    if size <= 0 or not _is_image(value):
        return None
    small = value.convert("RGB")
    small.thumbnail((size, size))
    buffer = io.BytesIO()
    small.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _is_image(value: Any) -> bool:
    return hasattr(value, "size") and hasattr(value, "mode")  # a PIL image


def describers(
    queries: list[Any] | None,
    index: list[Any] | None,
    query_name: Callable[[int], str],
    index_name: Callable[[int], str],
    relevance: Relevance | None = None,
    thumbnail_px: int = 0,
) -> tuple[Describe, Describe]:
    """Functions describing query ``q`` and index item ``i``: position, name and content; with ``relevance`` by
    label, the label too; with ``thumbnail_px``, images as thumbnails. ``queries`` / ``index``: the inputs, when
    known."""
    labels = (relevance.query_labels, relevance.index_labels) if isinstance(relevance, LabelRelevance) else None

    def describe(inputs: list[Any] | None, position: int, name: str, label: Any) -> dict[str, Any]:
        value = inputs[position] if inputs is not None else None
        entry = {"position": position, "name": name, "content": display_content(value)}
        if label is not None:
            entry["label"] = str(label)
        if (image := thumbnail(value, thumbnail_px)) is not None:
            entry["thumbnail"] = image
        return entry

    def describe_query(q: int) -> dict[str, Any]:
        return describe(queries, q, query_name(q), labels[0][q] if labels else None)

    def describe_item(i: int) -> dict[str, Any]:
        return describe(index, i, index_name(i), labels[1][i] if labels else None)

    return describe_query, describe_item


def display_examples(
    positions: np.ndarray,
    scores: np.ndarray,
    ids: np.ndarray,
    judgements: Judgements,
    k: int,
    describe_query: Describe,
    describe_item: Describe,
) -> list[dict[str, Any]]:
    """The top ``k`` results of the queries at ``positions``, with scores and grades (0: not relevant).

    ``describe_query(q)`` / ``describe_item(i)`` give each a name and content.  # scores, ids: (q, d)
    """
    ranking = Ranking(ids, scores, judgements.gains, judgements.num_relevant, describe_query, describe_item, 0, k)
    return [
        {
            "query": describe_query(q),
            "relevant_in_index": int(judgements.num_relevant[q]),
            "results": ranking.results(q),
        }
        for q in positions.tolist()
    ]


def changed_examples(before: Ranking, after: Ranking) -> list[dict[str, Any]]:
    """The ``after.count`` queries whose top ``after.k`` results changed most from ``before`` to ``after``: first by
    how many more (or fewer) of them are relevant, then by how many of them differ; ties in query order.

    Each: the query, its relevant items in the index, the relevant results shown before and after, and both
    rankings."""
    k = after.k
    changes = []
    for q in range(len(after.ids)):
        gained = after.relevant_shown(q) - before.relevant_shown(q)
        top_before, top_after = set(before.ids[q, :k].tolist()) - {-1}, set(after.ids[q, :k].tolist()) - {-1}
        changes.append((-abs(gained), -len(top_after - top_before), q))
    return [
        {
            "query": after.describe_query(q),
            "relevant_in_index": int(after.num_relevant[q]),
            "relevant_before": before.relevant_shown(q),
            "relevant_after": after.relevant_shown(q),
            "before": before.results(q),
            "after": after.results(q),
        }
        for _, _, q in sorted(changes)[: after.count]
    ]
