"""User data -> documents for the Flow.

Accepted: a CSV file path (sent whole, with the image files its rows name, so the Flow never reads the
client's disk), a DocList (documents with ``text`` and/or an image field, and ``finetuner_label`` or
``tags["finetuner_label"]``; or, for text models, ``text`` and ``text_pair`` (a query and its document), plus
``score`` for scored pairs; Finetuner's scored documents, two ``chunks`` (or ``text`` and ``text_pair``) with
``tags["finetuner_score"]``, are scored pairs too), or a list of ``(content, label)`` / ``(text, image)`` /
``(query, document)`` / ``(text, text, score)`` tuples. Two texts are ``(text, label)`` unless
``is_labeled=False`` (Finetuner's ``csv_options.is_labeled``), which makes them ``(query, document)``. Images may
be local paths, bytes, data URIs, PIL images, numpy arrays or torch tensors; paths are read here.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from pydantic import ValidationError

from finetuner_protocol.data.csv_reader import parse_score
from finetuner_protocol.data.errors import DataError, Problem
from finetuner_protocol.data.images import looks_like_image_reference
from finetuner_protocol.wire import FinetunerDoc

IMAGE_FIELDS = ("blob", "uri", "url", "image", "tensor")


def to_wire_docs(data: Any, split: str, modality: str = "text", is_labeled: bool = True) -> list[FinetunerDoc]:
    """Documents of ``split`` for ``data``, for a model that takes ``modality``. ``is_labeled=False``: pairs of
    texts are (query, document), not (text, label). A score that is not a number is reported with its item."""
    if data is None:
        return []
    if isinstance(data, (str, Path)):
        return _csv_docs(Path(data), split)
    docs, problems = [], []
    for index, entry in enumerate(data):
        try:
            docs.append(_item(entry, split, modality, is_labeled))
        except ValidationError as exc:  # a value of the wrong type for its field: one line, not pydantic's dump
            problems.append(Problem(f"{split} item {index}", _wrong_types(exc)))
        except ValueError as exc:
            problems.append(Problem(f"{split} item {index}", str(exc)))
    if problems:
        raise DataError(split, problems)
    return docs


def _csv_docs(path: Path, split: str) -> list[FinetunerDoc]:
    if not path.is_file():
        raise FileNotFoundError(f"{split} data: no such file {str(path)!r}")
    content = path.read_bytes()
    docs = [FinetunerDoc(kind="csv", split=split, name=path.name, blob=content)]
    for reference in sorted(_image_references(content)):
        file = (path.parent / reference).expanduser()
        if file.is_file():
            docs.append(FinetunerDoc(kind="file", split=split, name=reference, blob=file.read_bytes()))
    return docs


def _image_references(content: bytes) -> set[str]:
    """Cells of a CSV that name image files (data URIs travel inside the CSV)."""
    try:
        rows = csv.reader(io.StringIO(content.decode("utf-8", errors="replace"), newline=""))
        cells = {cell.strip() for row in rows for cell in row}
    except csv.Error:
        return set()
    return {cell for cell in cells if looks_like_image_reference(cell) and not cell.lower().startswith("data:")}


def _wrong_types(error: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(map(str, e['loc'])) or 'item'} cannot be a {type(e['input']).__name__} ({e['msg'].lower()})"
        for e in error.errors()
    )


def _item(entry: Any, split: str, modality: str, is_labeled: bool = True) -> FinetunerDoc:
    if isinstance(entry, (str, bytes, int, float, np.ndarray)):
        raise ValueError(f"expected a document or a (content, label) tuple, got a {type(entry).__name__} on its own")
    if isinstance(entry, (tuple, list)) and len(entry) == 3 and modality == "text":
        first, second, score = entry
        return FinetunerDoc(split=split, text=first, text_pair=second, score=parse_score(score))
    if isinstance(entry, (tuple, list)) and len(entry) == 2:
        return _from_pair(entry, split, modality, is_labeled)
    tags = getattr(entry, "tags", None) or {}
    label = getattr(entry, "finetuner_label", None) or tags.get("finetuner_label")
    text, text_pair = getattr(entry, "text", None), _field(entry, tags, "text_pair")
    score = _field(entry, tags, "score")
    if "finetuner_score" in tags:
        score, (text, text_pair) = tags["finetuner_score"], _scored_texts(entry, text, text_pair)
    doc = FinetunerDoc(
        split=split,
        text=text,
        finetuner_label=_str_or_none(label),
        text_pair=text_pair,
        score=None if score is None else parse_score(score),
    )
    image = next((getattr(entry, name) for name in IMAGE_FIELDS if getattr(entry, name, None) is not None), None)
    return _with_image(doc, image) if image is not None else doc


def _scored_texts(entry: Any, text: Any, text_pair: Any) -> tuple[str, str]:
    """The two texts of a document scored by ``tags["finetuner_score"]`` (Finetuner's format): ``text`` and
    ``text_pair``, or the texts of its two ``chunks``."""
    chunks = list(getattr(entry, "chunks", None) or [])
    if text is None and text_pair is None and len(chunks) == 2:
        text, text_pair = (_chunk_text(chunk) for chunk in chunks)
    if isinstance(text, str) and isinstance(text_pair, str):
        return text, text_pair
    raise ValueError(
        "tags['finetuner_score'] scores a pair of texts: the document needs 'text' and 'text_pair', "
        f"or two chunks with a text each (found {_found(text, text_pair, chunks)})"
    )


def _chunk_text(chunk: Any) -> Any:
    text = getattr(chunk, "text", None)
    return getattr(chunk, "content", None) if text is None else text


def _found(text: Any, text_pair: Any, chunks: list) -> str:
    fields = [name for name, value in (("text", text), ("text_pair", text_pair)) if value is not None]
    return ", ".join([*fields, f"{len(chunks)} chunk{'s' if len(chunks) != 1 else ''}"])


def _field(entry: Any, tags: dict, name: str) -> Any:
    value = getattr(entry, name, None)
    return tags.get(name) if value is None else value


def _from_pair(entry, split: str, modality: str, is_labeled: bool = True) -> FinetunerDoc:
    first, second = entry
    if modality == "text-image":
        text, image = (second, first) if _is_image(first) else (first, second)
        return _with_image(FinetunerDoc(split=split, text=text), image)
    if modality == "text" and not is_labeled:
        return FinetunerDoc(split=split, text=first, text_pair=second)
    if modality == "text":
        return FinetunerDoc(split=split, text=first, finetuner_label=_str_or_none(second))
    if modality == "vector":
        return FinetunerDoc(
            split=split, tensor=np.asarray(first, dtype=np.float32), finetuner_label=_str_or_none(second)
        )
    return _with_image(FinetunerDoc(split=split, finetuner_label=_str_or_none(second)), first)


def _is_image(value: Any) -> bool:
    if isinstance(value, str):
        return looks_like_image_reference(value)
    return isinstance(value, (bytes, Image.Image, np.ndarray)) or hasattr(value, "shape")


def _with_image(doc: FinetunerDoc, image: Any) -> FinetunerDoc:
    if isinstance(image, Image.Image):
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        doc.blob = buffer.getvalue()
    elif isinstance(image, bytes):
        doc.blob = image
    elif isinstance(image, (str, Path)):
        text = str(image)
        if text.lower().startswith("data:"):
            doc.uri = text
        elif Path(text).expanduser().is_file():
            doc.blob = Path(text).expanduser().read_bytes()
        else:
            raise FileNotFoundError(f"image file {text!r} not found")
    else:
        doc.tensor = np.asarray(image.detach().cpu() if hasattr(image, "detach") else image)
    return doc


def retrieval_docs(queries: list, index: list, pairs: list | None = None) -> list[FinetunerDoc]:
    """Query / index items named q0.. / d0..; an entry is a value or (value, label); pairs are (q, d[, grade])."""
    docs = [_role_doc(e, "query", f"q{i}") for i, e in enumerate(queries)]
    docs += [_role_doc(e, "index", f"d{i}") for i, e in enumerate(index)]
    if pairs is not None:
        rows = [[f"q{p[0]}", f"d{p[1]}", *p[2:3]] for p in pairs]
        docs.append(FinetunerDoc(kind="relevance", split="eval", payload=json.dumps({"pairs": rows})))
    return docs


def _role_doc(entry, role: str, name: str) -> FinetunerDoc:
    value, label = entry if isinstance(entry, tuple) else (entry, None)
    doc = FinetunerDoc(split="eval", role=role, name=name, finetuner_label=_str_or_none(label))
    if isinstance(value, str) and not _is_image(value):
        doc.text = value
        return doc
    return _with_image(doc, value)


def _str_or_none(value: Any) -> str | None:
    return None if value is None else str(value)
