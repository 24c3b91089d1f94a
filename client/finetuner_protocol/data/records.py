"""The units of accepted data, whatever they came from (CSV rows or documents), one class per data shape.

- :class:`LabeledItem` (``labeled``): a text, an image (``PIL.Image``) or a vector, with its class label.
- :class:`PairItem` (``text-image``): a text and the image it describes (unlabeled, for CLIP training).
- :class:`QueryDocItem` (``query-doc``): a query and a document that answers it (unlabeled: every other document
  of a batch is the query's negative).
- :class:`ScoredPairItem` (``scored``): two texts and a gold similarity score (any finite number, e.g. STS-B's
  0..5).

``to_row`` / ``from_row`` store them as JSON rows; an image is stored as a PNG file through ``save_image`` and
read back through ``load_image``, so the run store keeps images as files, not inline.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from PIL import Image

LABELED, TEXT_IMAGE, QUERY_DOC, SCORED = "labeled", "text-image", "query-doc", "scored"
SHAPES = {
    LABELED: "labeled items",
    TEXT_IMAGE: "text-image pairs",
    QUERY_DOC: "query-document pairs",
    SCORED: "scored pairs",
}


@dataclass(frozen=True)
class LabeledItem:
    content: Any
    label: str
    source: str = ""
    shape: ClassVar[str] = LABELED


@dataclass(frozen=True)
class PairItem:
    text: str
    image: Any
    source: str = ""
    shape: ClassVar[str] = TEXT_IMAGE


@dataclass(frozen=True)
class QueryDocItem:
    query: str
    document: str
    source: str = ""
    shape: ClassVar[str] = QUERY_DOC


@dataclass(frozen=True)
class ScoredPairItem:
    text: str
    text_pair: str
    score: float
    source: str = ""
    shape: ClassVar[str] = SCORED


Record = LabeledItem | PairItem | QueryDocItem | ScoredPairItem


def shape_of(records: list[Record]) -> str:
    """The data shape of a (non-empty) list of records, judged by its first record."""
    return records[0].shape


def content_kind(content: Any) -> str:
    """``text``, ``image`` or ``vector``."""
    if isinstance(content, str):
        return "text"
    if isinstance(content, Image.Image):
        return "image"
    return "vector"


def to_row(item: Record, save_image: Callable[[Image.Image], str]) -> dict[str, Any]:
    if isinstance(item, QueryDocItem):
        return {"query": item.query, "document": item.document}
    if isinstance(item, ScoredPairItem):
        return {"text": item.text, "text_pair": item.text_pair, "score": item.score}
    if isinstance(item, PairItem):
        return {"text": item.text, "image": save_image(item.image)}
    kind = content_kind(item.content)
    if kind == "image":
        return {"image": save_image(item.content), "label": item.label}
    if kind == "vector":
        return {"vector": np.asarray(item.content, dtype=np.float32).tolist(), "label": item.label}
    return {"text": item.content, "label": item.label}


def from_row(row: dict[str, Any], load_image: Callable[[str], Image.Image]) -> Record:
    if "query" in row:
        return QueryDocItem(row["query"], row["document"])
    if "score" in row:
        return ScoredPairItem(row["text"], row["text_pair"], float(row["score"]))
    if "label" not in row:
        return PairItem(text=row["text"], image=load_image(row["image"]))
    if "image" in row:
        return LabeledItem(load_image(row["image"]), row["label"])
    if "vector" in row:
        return LabeledItem(np.asarray(row["vector"], dtype=np.float32), row["label"])
    return LabeledItem(row["text"], row["label"])
