"""The units of accepted data, whatever they came from (CSV rows or documents), one class per data shape.

- :class:`LabeledItem` (``labeled``): a text, an image (``PIL.Image``) or a vector, with its class label.
- :class:`PairItem` (``text-image``): a text and the image it describes (unlabeled, for CLIP training).
- :class:`QueryDocItem` (``query-doc``): a query and a document that answers it (unlabeled: every other document
  of a batch is the query's negative).
- :class:`ScoredPairItem` (``scored``): two texts and a gold similarity score (any finite number, e.g. STS-B's
  0..5).

Each shape, with everything the layers do with its records, is defined in :mod:`finetuner_protocol.shapes`.
``to_row`` / ``from_row`` store them as JSON rows; an image is stored as a PNG file through ``save_image`` and
read back through ``load_image``, so the run store keeps images as files, not inline.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from PIL import Image

LABELED, TEXT_IMAGE, QUERY_DOC, SCORED = "labeled", "text-image", "query-doc", "scored"  # see finetuner_protocol.shapes


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


def content_kind(content: Any) -> str:
    """``text``, ``image`` or ``vector``."""
    if isinstance(content, str):
        return "text"
    if isinstance(content, Image.Image):
        return "image"
    return "vector"
