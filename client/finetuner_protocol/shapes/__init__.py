"""The data shapes, one file each, in one registry: :data:`SHAPES` (name -> :class:`Shape`).

Shapes are registered from the most general to the most specific: a text document whose fields mark several
shapes (``text_pair`` and ``score``) is of the last of them (a scored pair). Every layer reads this table: the
readers and checks here, the core's training tasks (``training.tasks.TASKS``) and evaluation routines
(``evaluation.routines.EVALUATIONS``) by the shape's name.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PIL import Image

from finetuner_protocol.data.errors import DataError, Problem
from finetuner_protocol.data.records import LABELED, Record
from finetuner_protocol.shapes import labeled, query_doc, scored, text_image
from finetuner_protocol.shapes.base import CORRELATION, CORRELATIONS, RANK, Shape

SHAPES: dict[str, Shape] = {
    shape.name: shape for shape in (labeled.SHAPE, text_image.SHAPE, query_doc.SHAPE, scored.SHAPE)
}

__all__ = [
    "CORRELATION",
    "CORRELATIONS",
    "RANK",
    "SHAPES",
    "Shape",
    "check_loss",
    "doc_shape",
    "from_row",
    "row_shape",
    "shape_of",
    "to_row",
    "validate_records",
]


def shape_of(records: list) -> Shape:
    """The shape of a (non-empty) list of records, judged by its first record."""
    return SHAPES[records[0].shape]


def doc_shape(doc) -> Shape:
    """The shape of a text model's item document, by the fields it fills: the last shape whose marks it fills
    all, else labeled items (shapes without marks are chosen by the model, not by a document's fields)."""
    marked = [
        shape
        for shape in SHAPES.values()
        if shape.doc_marks and all(getattr(doc, field, None) is not None for field in shape.doc_marks)
    ]
    return marked[-1] if marked else SHAPES[LABELED]


def row_shape(row: dict[str, Any]) -> Shape:
    """The shape of a stored JSON row, by its keys."""
    return next(shape for shape in SHAPES.values() if shape.row_fields <= row.keys())


def check_loss(name: str, shape: str) -> str:
    """``name`` when that loss trains on data of ``shape``; else a ValueError listing the losses that do."""
    wanted = SHAPES[shape]
    trains_on = next((each for each in SHAPES.values() if name in each.losses), None)
    if trains_on is None:
        known = ", ".join(loss for each in SHAPES.values() for loss in each.losses)
        raise ValueError(f"unknown name {name!r}; allowed: {known}")
    if trains_on is wanted:
        return name
    reason = f"{name} trains on {trains_on.description}, but this data holds {wanted.description}"
    reason += wanted.loss_hints.get(trains_on.name, "")
    raise ValueError(f"{reason}; losses for {wanted.description}: {', '.join(wanted.losses)}")


def validate_records(records: list, dataset: str, min_items_per_class: int = 2, whole: bool = True) -> None:
    """The checks of the records' shape (``Shape.validate``): one DataError naming every bad item."""
    if not records:
        raise DataError(dataset, [Problem(dataset, "the data set is empty")])
    shape_of(records).validate(records, dataset, min_items_per_class, whole)


def to_row(item: Record, save_image: Callable[[Image.Image], str]) -> dict[str, Any]:
    """The JSON row of a record (its shape's ``to_row``)."""
    return SHAPES[item.shape].to_row(item, save_image)


def from_row(row: dict[str, Any], load_image: Callable[[str], Image.Image]) -> Record:
    """The record of a JSON row, of the shape its keys name."""
    return row_shape(row).from_row(row, load_image)
