"""Labeled items: a text, an image or a vector with its class label; items of one class are each other's
positives. CSV rows ``text,label`` (text models) or ``image,label`` (image models); documents with ``text``, an
image or a vector, and ``finetuner_label``."""

from __future__ import annotations

from typing import Any

import numpy as np

from finetuner_protocol.data.images import image_to_png_bytes
from finetuner_protocol.data.records import LABELED, QUERY_DOC, LabeledItem, content_kind
from finetuner_protocol.data.validation import validate_labeled
from finetuner_protocol.shapes.base import RANK, LoadImage, SaveImage, Shape


def _read_doc(doc, where: str) -> LabeledItem:
    """A text document's item (an image or a vector is decoded by the intake, then read as a row)."""
    return LabeledItem(doc.text, getattr(doc, "finetuner_label", None), where)


def _to_doc(record: LabeledItem) -> dict[str, Any]:
    kind = content_kind(record.content)
    if kind == "image":
        return {"blob": image_to_png_bytes(record.content), "finetuner_label": record.label}
    if kind == "vector":
        return {"tensor": np.asarray(record.content, dtype=np.float32), "finetuner_label": record.label}
    return {"text": record.content, "finetuner_label": record.label}


def _to_row(record: LabeledItem, save_image: SaveImage) -> dict[str, Any]:
    kind = content_kind(record.content)
    if kind == "image":
        return {"image": save_image(record.content), "label": record.label}
    if kind == "vector":
        return {"vector": np.asarray(record.content, dtype=np.float32).tolist(), "label": record.label}
    return {"text": record.content, "label": record.label}


def _from_row(row: dict[str, Any], load_image: LoadImage) -> LabeledItem:
    if "image" in row:
        return LabeledItem(load_image(row["image"]), row["label"])
    if "vector" in row:
        return LabeledItem(np.asarray(row["vector"], dtype=np.float32), row["label"])
    return LabeledItem(row["text"], row["label"])


def _validate(records: list, dataset: str, min_items_per_class: int, whole: bool) -> None:
    validate_labeled(records, dataset, min_items_per_class, whole=whole)


SHAPE = Shape(
    name=LABELED,
    description="labeled items",
    record=LabeledItem,
    columns=("text", "label"),
    read_row=lambda where, cells: LabeledItem(cells[0], cells[1], where),
    read_doc=_read_doc,
    doc_marks=(),
    to_doc=_to_doc,
    row_fields=frozenset({"label"}),
    to_row=_to_row,
    from_row=_from_row,
    validate=_validate,
    holds=lambda record: content_kind(record.content),
    modality=lambda record: content_kind(record.content),
    text_columns=lambda record: {"text": record.content},
    default_loss="TripletMarginLoss",
    losses=("TripletMarginLoss", "InfoNCELoss", "ArcFaceLoss", "CosFaceLoss", "SupConLoss", "SiameseLoss"),
    metrics=RANK,
    default_monitor="mrr@10",
    eval_sizes=lambda records: (len(records), len(records), True),
    card_counts=("labels", "label"),
    card_evaluation="Retrieval on the evaluation data ({count} queries), before and after training.",
    loss_hints={
        QUERY_DOC: " (two-column text data is read as query-document pairs with csv_options={'is_labeled': False})"
    },
)
