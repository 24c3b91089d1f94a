"""Cross-modal evaluation of text-image pairs: each distinct text is a query against every image.

An image is relevant to a text when the two were paired (several images may share one caption, e.g.
``a photo of a cat``), so text-to-image retrieval is scored with the same steps and metrics as any evaluation.
"""

from __future__ import annotations

from typing import Any

from finetuner_core.evaluation.dataset import paired_set
from finetuner_core.evaluation.evaluate import DEFAULT_KS, Encoder, evaluate


def evaluate_pairs(
    model: Encoder, pairs: list[Any], ks: tuple[int, ...] = DEFAULT_KS, index_model: Encoder | None = None
) -> dict:
    """Text-to-image metrics of ``model`` (or of ``model`` for texts and ``index_model`` for images)."""
    return evaluate(paired_set(pairs), model, ks, index_model).metrics
