"""User data (a CSV path, a DocList, or a list of (text, label) pairs) -> documents for the Flow."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from finetuner_core.wire import FinetunerDoc

IMAGE_FIELDS = ("uri", "url", "tensor", "image", "blob")


def to_wire_docs(data: Any, split: str) -> list[FinetunerDoc]:
    """Documents of ``split`` for ``data``; a CSV file travels whole and is parsed by the validator."""
    if data is None:
        return []
    if isinstance(data, (str, Path)):
        path = Path(data)
        if not path.is_file():
            raise FileNotFoundError(f"{split} data: no such file {str(path)!r}")
        return [FinetunerDoc(kind="csv", split=split, name=path.name, blob=path.read_bytes())]
    return [_item(entry, split) for entry in data]


def _item(entry: Any, split: str) -> FinetunerDoc:
    if isinstance(entry, (tuple, list)) and len(entry) == 2:
        return FinetunerDoc(split=split, text=entry[0], finetuner_label=entry[1])
    tags = getattr(entry, "tags", None) or {}
    label = getattr(entry, "finetuner_label", None) or tags.get("finetuner_label")
    doc = FinetunerDoc(split=split, text=getattr(entry, "text", None), finetuner_label=_str_or_none(label))
    image = next(
        (getattr(entry, name) for name in IMAGE_FIELDS if getattr(entry, name, None) is not None), None
    )
    if image is not None:
        doc.uri = image if isinstance(image, str) else "<in-memory image>"
    return doc


def _str_or_none(value: Any) -> str | None:
    return None if value is None else str(value)
