"""Scored pairs: two texts and a gold similarity score (any finite number, e.g. STS-B's 0..5); training follows
the scores, evaluation correlates cosine similarity with them. CSV rows ``text,text,score``; documents with
``text``, ``text_pair`` and ``score``."""

from __future__ import annotations

from typing import Any

from finetuner_protocol.data.errors import DataError, Problem
from finetuner_protocol.data.records import SCORED, ScoredPairItem
from finetuner_protocol.data.validation import validate_scored
from finetuner_protocol.shapes.base import CORRELATION, LoadImage, SaveImage, Shape


def parse_score(value) -> float:
    """A score as a float (NaN and infinities included: validation refuses them); ValueError names the value."""
    if isinstance(value, bool):
        raise ValueError(f"score {value!r} is not a number")
    try:
        return float(value.strip() if isinstance(value, str) else value)
    except (TypeError, ValueError):
        raise ValueError(f"score {value!r} is not a number") from None


def _read_row(where: str, cells: list[Any]) -> ScoredPairItem:
    """A score that is not a number stays as written, for validation to report with the rest."""
    first, second, score = cells
    try:
        score = parse_score(score)
    except ValueError:
        pass
    return ScoredPairItem(first, second, score, where)


def _read_doc(doc, where: str) -> ScoredPairItem:
    """A document's pair; a score that is not a number is refused here, naming the document."""
    try:
        return ScoredPairItem(doc.text, getattr(doc, "text_pair", None), parse_score(doc.score), where)
    except ValueError as exc:
        raise DataError(where, [Problem(where, str(exc))]) from None


def _to_row(record: ScoredPairItem, save_image: SaveImage) -> dict[str, Any]:
    return {"text": record.text, "text_pair": record.text_pair, "score": record.score}


def _from_row(row: dict[str, Any], load_image: LoadImage) -> ScoredPairItem:
    return ScoredPairItem(row["text"], row["text_pair"], float(row["score"]))


SHAPE = Shape(
    name=SCORED,
    description="scored pairs",
    record=ScoredPairItem,
    columns=("text", "text", "score"),
    read_row=_read_row,
    read_doc=_read_doc,
    doc_marks=("score",),
    to_doc=lambda record: {"text": record.text, "text_pair": record.text_pair, "score": record.score},
    row_fields=frozenset({"text", "text_pair", "score"}),
    to_row=_to_row,
    from_row=_from_row,
    validate=lambda records, dataset, min_items_per_class, whole: validate_scored(records, dataset, whole),
    holds=lambda record: SCORED,
    modality=lambda record: "text",
    text_columns=lambda record: {"first text": record.text, "second text": record.text_pair},
    default_loss="CoSENTLoss",
    losses=("CoSENTLoss", "CosineSimilarityLoss", "MarginMSELoss"),
    metrics=CORRELATION,
    default_monitor="spearman",
    eval_sizes=None,
    card_counts=("texts", "text"),
    card_evaluation="Correlation of cosine similarity with the gold scores on the evaluation data ({count} pairs), "
    "before and after training.",
)
