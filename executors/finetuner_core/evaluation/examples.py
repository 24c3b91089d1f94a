"""Sample queries with their top results, to look at next to the metrics (Finetuner's display examples)."""

from __future__ import annotations

from typing import Any

import numpy as np

from finetuner_core.evaluation.metrics import Judgements


def example_positions(num_queries: int, count: int) -> np.ndarray:
    """``count`` query positions spread evenly over the queries, first and last included.  # (<= count,)"""
    if count <= 0 or num_queries == 0:
        return np.zeros(0, np.int64)
    return np.unique(np.linspace(0, num_queries - 1, min(count, num_queries)).round().astype(np.int64))


def display_content(value: Any) -> Any:
    """A JSON-friendly view of an input: texts and references as they are, images and arrays by their size."""
    if value is None or isinstance(value, str | int | float):
        return value
    if hasattr(value, "size") and hasattr(value, "mode"):  # a PIL image
        return f"image {value.size[0]}x{value.size[1]}"
    return f"array {tuple(np.shape(value))}"


def display_examples(
    positions: np.ndarray,
    scores: np.ndarray,
    ids: np.ndarray,
    judgements: Judgements,
    k: int,
    describe_query,
    describe_item,
) -> list[dict[str, Any]]:
    """The top ``k`` results of the queries at ``positions``, with scores and grades (0: not relevant).

    ``describe_query(q)`` / ``describe_item(i)`` give each a name and content.  # scores, ids: (q, d)
    """
    examples = []
    for q in positions.tolist():
        results = [
            {"rank": rank + 1, **describe_item(int(i)), "score": float(s), "relevance": float(g)}
            for rank, (i, s, g) in enumerate(zip(ids[q, :k], scores[q, :k], judgements.gains[q, :k], strict=True))
            if i >= 0
        ]
        examples.append(
            {"query": describe_query(q), "relevant_in_index": int(judgements.num_relevant[q]), "results": results}
        )
    return examples
