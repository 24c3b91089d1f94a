"""Whether a split's values are of the modality the model takes, judged on whole columns.

A text model given a column whose every value names an image (a path or URL ending in an image extension, or an
image data URI) would train on the file names; an image model given a CSV column in which no value names an
image would be given texts. One text that mentions a file ("see photo.jpg") decides nothing: a whole column must
agree before data is refused.
"""

from __future__ import annotations

from finetuner_protocol.backbones import DEFAULT_CLIP_MODEL, DEFAULT_IMAGE_MODEL, DEFAULT_TEXT_MODEL
from finetuner_protocol.data.errors import DataError, Problem
from finetuner_protocol.data.images import looks_like_image_reference
from finetuner_protocol.data.records import Record
from finetuner_protocol.shapes import SHAPES

SHOWN = 60  # characters of a value shown in a message (data URIs are long)


def check_text_columns(records: list[Record], dataset: str, model: str | None = None) -> None:
    """Refuse text records whose every value of a column (the texts; a pair's first or second texts) names an
    image."""
    for column, cells in _text_columns(records).items():
        values = [(where, value) for where, value in cells if isinstance(value, str) and value.strip()]
        if values and all(looks_like_image_reference(value) for _, value in values):
            where, value = values[0]
            reason = (
                f"{_shown(value)} looks like an image (a path, URL or data URI), as does every {column} of this "
                f"data set, but {_model(model)} takes text; use an image model such as {DEFAULT_IMAGE_MODEL!r} "
                f"(or {DEFAULT_CLIP_MODEL!r} for image-text pairs)"
            )
            raise DataError(dataset, [Problem(where, reason)])


def check_image_column(rows: list[tuple[str, list[str]]], name: str, modality: str, files: dict, model=None) -> None:
    """Refuse the rows of an image CSV (``image,label`` or ``image,text``) when not one value names an image
    (a path or data URI, or a file sent with the CSV): its values are texts."""
    if not rows or any(looks_like_image_reference(cell) or cell in files for _, cells in rows for cell in cells):
        return
    where, cells = rows[0]
    takes = "images" if modality == "image" else "image-text pairs"
    reason = (
        f"{_shown(cells[0])} names no image, nor does any value of this file, but {_model(model)} takes {takes}; "
        f"for labeled texts use a text model such as {DEFAULT_TEXT_MODEL!r}"
    )
    raise DataError(name, [Problem(where, reason)])


def _text_columns(records: list[Record]) -> dict[str, list[tuple[str, object]]]:
    columns: dict[str, list[tuple[str, object]]] = {}
    for index, record in enumerate(records):
        where = record.source or f"item {index}"
        for column, value in SHAPES[record.shape].text_columns(record).items():
            columns.setdefault(column, []).append((where, value))
    return columns


def _shown(value: str) -> str:
    return repr(value if len(value) <= SHOWN else value[:SHOWN] + "...")


def _model(model: str | None) -> str:
    return "the model" if model is None else f"model {model!r}"
