"""The one error of evaluation: the input cannot be evaluated, and the message says why and what to do."""

from __future__ import annotations


class EvaluationError(ValueError):
    """Evaluation refused: empty sets, k beyond the index, mismatched dimensions, NaN embeddings, bad pairs."""
