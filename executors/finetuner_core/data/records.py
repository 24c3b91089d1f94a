"""The units of accepted data, whatever they came from (CSV rows or documents).

- :class:`LabeledItem`: a text, an image (``PIL.Image``) or a vector, with its class label.
- :class:`PairItem`: a text and the image it describes (unlabeled, for CLIP training).

``to_row`` / ``from_row`` store them as JSON rows; an image is stored as a PNG file through ``save_image`` and
read back through ``load_image``, so the run store keeps images as files, not inline.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class LabeledItem:
    content: Any
    label: str
    source: str = ""


@dataclass(frozen=True)
class PairItem:
    text: str
    image: Any
    source: str = ""


def content_kind(content: Any) -> str:
    """``text``, ``image`` or ``vector``."""
    if isinstance(content, str):
        return "text"
    if isinstance(content, Image.Image):
        return "image"
    return "vector"


def to_row(item: LabeledItem | PairItem, save_image: Callable[[Image.Image], str]) -> dict[str, Any]:
    if isinstance(item, PairItem):
        return {"text": item.text, "image": save_image(item.image)}
    kind = content_kind(item.content)
    if kind == "image":
        return {"image": save_image(item.content), "label": item.label}
    if kind == "vector":
        return {"vector": np.asarray(item.content, dtype=np.float32).tolist(), "label": item.label}
    return {"text": item.content, "label": item.label}


def from_row(row: dict[str, Any], load_image: Callable[[str], Image.Image]) -> LabeledItem | PairItem:
    if "label" not in row:
        return PairItem(text=row["text"], image=load_image(row["image"]))
    if "image" in row:
        return LabeledItem(load_image(row["image"]), row["label"])
    if "vector" in row:
        return LabeledItem(np.asarray(row["vector"], dtype=np.float32), row["label"])
    return LabeledItem(row["text"], row["label"])
