"""Records on disk: JSON rows (shapes.to_row / from_row), one per line, with images as PNG files beside
them. Files are written atomically (a temporary file, then a rename), so a reader never sees half a file."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from pathlib import Path

from PIL import Image

from finetuner_protocol.data.images import image_from_png_bytes, image_to_png_bytes
from finetuner_protocol.shapes import from_row, to_row


def image_writer(folder: Path, prefix: str = "") -> Callable[[Image.Image], str]:
    """Saves each image as ``images/<prefix><n>.png`` under ``folder``; returns the name a row keeps."""
    counter = iter(range(1 << 62))

    def save(image: Image.Image) -> str:
        name = f"images/{prefix}{next(counter):08d}.png"
        (folder / name).write_bytes(image_to_png_bytes(image))
        return name

    return save


def rows_text(records: Iterable, save_image: Callable[[Image.Image], str]) -> str:
    return "".join(json.dumps(to_row(record, save_image), ensure_ascii=False) + "\n" for record in records)


def read_records(folder: Path, path: Path) -> list:
    """The records of the rows file ``path``, their images read from ``folder``."""

    def load_image(name: str) -> Image.Image:
        return image_from_png_bytes((folder / name).read_bytes())

    return [from_row(row, load_image) for row in json_rows(path)]


def json_rows(path: Path) -> list[dict]:
    """The JSON rows of a rows file. Lines end in ``\\n`` only: a text may hold other line breaks (U+2028,
    U+0085, ...), which JSON keeps as they are and ``str.splitlines`` would cut."""
    return [json.loads(line) for line in path.read_bytes().decode("utf-8").split("\n") if line]


def atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
