"""Read Finetuner's labeled CSV format: ``text,label`` per row.

- The header is optional: ``header=None`` takes the first row as a header when both cells are known
  column names (``text``/``sentence``/``image``/... and ``label``/``finetuner_label``/``category``/...).
- The dialect (delimiter, quoting) is sniffed from the first few kilobytes unless one is named.
- The file is decoded with the given encoding; bytes that do not decode are reported with their line.

Every row that cannot be read becomes a :class:`Problem`; one :class:`DataError` lists them all.
"""

from __future__ import annotations

import codecs
import csv
import io

from pydantic import BaseModel, ConfigDict, Field, field_validator

from finetuner_core.data.errors import DataError, Problem
from finetuner_core.data.records import LabeledItem

HEADER_NAMES = {
    *("text", "sentence", "query", "anchor", "document", "caption"),
    *("image", "image_path", "image_uri", "path", "uri", "file"),
    *("label", "finetuner_label", "category", "class", "labels"),
}
SNIFF_BYTES = 16 * 1024
DELIMITERS = ",;\t|"


class CSVOptions(BaseModel):
    """How to read a CSV file (Finetuner's ``csv_options``)."""

    model_config = ConfigDict(extra="forbid")

    encoding: str = Field("utf-8", description="text encoding of the file, e.g. utf-8, latin-1")
    dialect: str = Field("auto", description="'auto' (sniffed) or a csv module dialect: excel, excel-tab, unix")
    header: bool | None = Field(None, description="True / False, or None to detect a known header row")

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, value: str) -> str:
        try:
            codecs.lookup(value)
        except LookupError as exc:
            raise ValueError(f"unknown encoding {value!r}") from exc
        return value

    @field_validator("dialect")
    @classmethod
    def _known_dialect(cls, value: str) -> str:
        allowed = ["auto", *csv.list_dialects()]
        if value not in allowed:
            raise ValueError(f"unknown dialect {value!r}; allowed: {', '.join(sorted(allowed))}")
        return value


def read_labeled_csv(content: bytes, name: str, options: CSVOptions | None = None) -> list[LabeledItem]:
    """Parse ``content`` (the bytes of a CSV file called ``name``) into labeled texts.

    Raises :class:`DataError` naming each bad row (1-based line numbers of the file).
    """
    rows = read_csv_rows(content, name, options)
    return [LabeledItem(content=cells[0], label=cells[1], source=where) for where, cells in rows]


def read_csv_rows(
    content: bytes, name: str, options: CSVOptions | None = None, columns: str = "text, label"
) -> list[tuple[str, list[str]]]:
    """``(where, [cell, cell])`` for every data row of a two-column CSV file, or one :class:`DataError`."""
    options = options or CSVOptions()
    text = _decode(content, name, options.encoding)
    rows = list(_rows(text, name, options.dialect))
    if rows and _is_header(rows[0][1], options.header):
        rows = rows[1:]
    problems = [
        Problem(f"{name} row {line}", f"expected 2 columns ({columns}), found {len(cells)}")
        for line, cells in rows
        if len(cells) != 2
    ]
    if problems:
        raise DataError(name, problems)
    return [(f"{name} row {line}", cells) for line, cells in rows]


def _decode(content: bytes, name: str, encoding: str) -> str:
    try:
        text = content.decode(encoding)
    except UnicodeDecodeError as exc:
        line = content[: exc.start].count(b"\n") + 1
        reason = f"not valid {encoding} (byte 0x{content[exc.start]:02x} at offset {exc.start}); "
        reason += "pass csv_options={'encoding': ...} with the file's encoding"
        raise DataError(name, [Problem(f"{name} row {line}", reason)]) from None
    return text.removeprefix("\ufeff")


def _rows(text: str, name: str, dialect: str):
    """Yield ``(line number, cells)`` for each non-blank row."""
    reader = csv.reader(io.StringIO(text, newline=""), dialect=_dialect(text, dialect))
    try:
        for cells in reader:
            if cells and any(cell.strip() for cell in cells):
                yield reader.line_num, cells
    except csv.Error as exc:
        raise DataError(name, [Problem(f"{name} row {reader.line_num}", f"malformed CSV: {exc}")]) from None


def _dialect(text: str, dialect: str):
    """A named dialect, or Excel's quoting rules with the delimiter sniffed from the first kilobytes.

    Only the delimiter is sniffed: the sniffer's guesses about quoting go wrong on texts that quote
    themselves (``""like this""``), and RFC 4180 quoting is what CSV writers produce.
    """
    if dialect != "auto":
        return csv.get_dialect(dialect)
    try:
        delimiter = csv.Sniffer().sniff(text[:SNIFF_BYTES], delimiters=DELIMITERS).delimiter
    except csv.Error:
        delimiter = ","
    return type("Sniffed", (csv.excel,), {"delimiter": delimiter})


def _is_header(cells: list[str], header: bool | None) -> bool:
    if header is not None:
        return header
    names = [cell.strip().lower() for cell in cells]
    return len(names) == 2 and all(name in HEADER_NAMES for name in names)
