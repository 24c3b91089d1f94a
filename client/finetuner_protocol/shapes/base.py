"""What a data shape is: one kind of training data, and what every layer does with it.

A :class:`Shape` holds what the protocol knows about its data (the record type, how CSV rows, item documents and
stored JSON rows become its records and back, its checks, the losses that train on it and what its evaluation
reports); the core keeps its own tables by the shape's name (the training task, the evaluation routine), and
``tests/unit/test_shapes.py`` fails when one of them lacks a registered shape.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from finetuner_protocol.metrics import CORRELATIONS

RANK, CORRELATION = "rank", "correlation"  # what an evaluation reports: metrics at a cut-off k, or correlations

SaveImage = Callable[[Image.Image], str]
LoadImage = Callable[[str], Image.Image]


@dataclass(frozen=True)
class Shape:
    """One data shape. Callables take and give records of ``record``; ``where`` names a row or document."""

    name: str  # the short name records carry (``record.shape``) and the core's tables use
    description: str  # how messages call its records, e.g. "scored pairs"
    record: type
    columns: tuple[str, ...]  # a CSV row's columns in order, as messages name them
    read_row: Callable[[str, list[Any]], Any]  # (where, cells in column order) -> record
    read_doc: Callable[[Any, str], Any]  # (an item document, where) -> record
    doc_marks: tuple[str, ...]  # fields that, all filled, make a text document one of this shape (none: never)
    to_doc: Callable[[Any], dict[str, Any]]  # record -> the document fields it fills
    row_fields: frozenset[str]  # the keys of a stored JSON row of this shape
    to_row: Callable[[Any, SaveImage], dict[str, Any]]
    from_row: Callable[[dict[str, Any], LoadImage], Any]
    validate: Callable[[list, str, int, bool], None]  # (records, dataset, min items per class, whole)
    holds: Callable[[Any], str]  # what a record holds, in messages: text, image, vector, text-image, query-doc ...
    modality: Callable[[Any], str]  # what a model must take to train on the record
    text_columns: Callable[[Any], dict[str, object]]  # a record's texts by column, for content checks
    default_loss: str
    losses: tuple[str, ...]  # every loss that trains on this shape (the core's LOSSES agree)
    metrics: str  # RANK or CORRELATION
    default_monitor: str  # the metric its evaluation leads with
    eval_sizes: Callable[[list], tuple[int, int, bool]] | None  # RANK: (queries, index items, own item left out)
    card_counts: tuple[str, str]  # the model card's data table: (column, record field counted distinct)
    card_evaluation: str  # the model card's evaluation sentence; {count} is the number of queries or pairs
    loss_hints: Mapping[str, str] = field(default_factory=dict)  # shape of a misnamed loss -> how to read the data

    @property
    def reports(self) -> str:
        """What its evaluation reports, in messages."""
        if self.metrics == CORRELATION:
            return ", ".join(CORRELATIONS)
        return f"metrics at a cut-off such as {self.default_monitor}"

    def measures(self, monitor: str) -> bool:
        """Whether ``monitor`` (``loss`` or a metric name) is measured on evaluation data of this shape."""
        return monitor == "loss" or (monitor in CORRELATIONS) == (self.metrics == CORRELATION)
