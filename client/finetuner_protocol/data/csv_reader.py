"""Read Finetuner's CSV formats: ``text,label`` per row (labeled), and for text models also ``query,document``
(query-document pairs) and ``text,text,score`` (scored pairs).

- The header is optional: ``header=None`` takes the first row as a header when every cell is a known column name
  (``text``/``sentence``/``query``/``image``/... and ``label``/``finetuner_label``/``category``/..., or two texts
  and ``score``/``similarity``/``label``).
- The shape of a text file (:func:`read_text_csv`): three columns are scored pairs; two columns are labeled
  texts, unless ``is_labeled=False`` or a header names two texts (``query,document``, ``anchor,positive``,
  ``sentence1,sentence2`` ...), which make them query-document pairs. Without a header, the column count most
  rows have decides, and three columns count as scored pairs only when most third cells are numbers.
- The dialect (delimiter, quoting) is sniffed from the first few kilobytes unless one is named.
- The file is decoded with the given encoding; bytes that do not decode are reported with their line.

Every row that cannot be read becomes a :class:`Problem`; one :class:`DataError` lists them all.
"""

from __future__ import annotations

import codecs
import csv
import io
from collections import Counter

from pydantic import BaseModel, ConfigDict, Field, field_validator

from finetuner_protocol.data.errors import DataError, Problem
from finetuner_protocol.data.records import LABELED, QUERY_DOC, SCORED, LabeledItem, Record
from finetuner_protocol.shapes import SHAPES
from finetuner_protocol.shapes.scored import parse_score

__all__ = ["CSVOptions", "parse_score", "read_csv_rows", "read_labeled_csv", "read_text_csv"]

TEXT_NAMES = {
    *("text", "sentence", "query", "anchor", "document", "caption", "positive", "passage", "question", "answer"),
    *("sentence1", "sentence2", "text1", "text2", "text_a", "text_b", "sentence_a", "sentence_b", "text_pair"),
}
IMAGE_NAMES = {"image", "image_path", "image_uri", "path", "uri", "file"}
LABEL_NAMES = {"label", "finetuner_label", "category", "class", "labels"}
SCORE_NAMES = {"score", "similarity", "similarity_score", "relatedness", "gold", "gold_score", "label"}
HEADER_NAMES = TEXT_NAMES | IMAGE_NAMES | LABEL_NAMES
SNIFF_BYTES = 16 * 1024
DELIMITERS = ",;\t|"


class CSVOptions(BaseModel):
    """How to read a CSV file (Finetuner's ``csv_options``)."""

    model_config = ConfigDict(extra="forbid")

    encoding: str = Field("utf-8", description="text encoding of the file, e.g. utf-8, latin-1")
    dialect: str = Field("auto", description="'auto' (sniffed) or a csv module dialect: excel, excel-tab, unix")
    header: bool | None = Field(None, description="True / False, or None to detect a known header row")
    is_labeled: bool = Field(
        True, description="two-column text files (and text 2-tuples): text,label (True) or query,document (False)"
    )

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
    _, rows = _table(content, name, options or CSVOptions())
    return _checked(rows, name, 2, columns)


def read_text_csv(content: bytes, name: str, options: CSVOptions | None = None) -> list[Record]:
    """The records of a CSV file for a text model: labeled texts, query-document pairs or scored pairs (see the
    module's docstring for how the shape is told), each row read by its shape. A score that is not a number is
    reported with its row."""
    options = options or CSVOptions()
    header, rows = _table(content, name, options)
    if _width(header, rows) == 3:
        shape = SHAPES[SCORED]
    elif not options.is_labeled or _names_two_texts(header):
        shape = SHAPES[QUERY_DOC]
    else:
        shape = SHAPES[LABELED]
    checked = _checked(rows, name, len(shape.columns), ", ".join(shape.columns))
    return [shape.read_row(where, cells) for where, cells in checked]


def _table(content: bytes, name: str, options: CSVOptions) -> tuple[list[str] | None, list[tuple[int, list[str]]]]:
    """The header's cells (None: no header) and ``(line number, cells)`` of every data row."""
    text = _decode(content, name, options.encoding)
    rows = list(_rows(text, name, options.dialect))
    if rows and _is_header(rows[0][1], options.header):
        return [cell.strip().lower() for cell in rows[0][1]], rows[1:]
    return None, rows


def _checked(rows: list[tuple[int, list[str]]], name: str, width: int, columns: str) -> list[tuple[str, list[str]]]:
    problems = [
        Problem(f"{name} row {line}", f"expected {width} columns ({columns}), found {len(cells)}")
        for line, cells in rows
        if len(cells) != width
    ]
    if problems:
        raise DataError(name, problems)
    return [(f"{name} row {line}", cells) for line, cells in rows]


def _width(header: list[str] | None, rows: list[tuple[int, list[str]]]) -> int:
    """3 for scored pairs, else 2: the header's width, or the width most rows have (3 only when most of those
    rows end in a number)."""
    if header is not None:
        return 3 if len(header) == 3 else 2
    widths = Counter(len(cells) for _, cells in rows)
    if not widths or widths[3] <= widths[2] or widths[3] < max(widths.values()):
        return 2
    numeric = sum(_is_number(cells[2]) for _, cells in rows if len(cells) == 3)
    return 3 if 2 * numeric > widths[3] else 2


def _is_number(cell: str) -> bool:
    try:
        parse_score(cell)
    except ValueError:
        return False
    return True


def _names_two_texts(header: list[str] | None) -> bool:
    return header is not None and len(header) == 2 and all(name in TEXT_NAMES for name in header)


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
    if len(names) == 3:
        return names[0] in TEXT_NAMES and names[1] in TEXT_NAMES and names[2] in SCORE_NAMES
    return len(names) == 2 and all(name in HEADER_NAMES for name in names)
