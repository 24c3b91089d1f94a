"""Text data for a text model, in any of its shapes: labeled texts, query-document pairs or scored pairs.

A split's CSV files (:func:`~finetuner_protocol.data.csv_reader.read_text_csv`) and item documents become records of
one shape; a split that mixes shapes is refused. An item document's shape follows from its fields:

- ``text`` and ``finetuner_label``: a labeled text
- ``text`` and ``text_pair``: a query-document pair (``text`` is the query)
- ``text``, ``text_pair`` and ``score``: a scored pair
"""

from __future__ import annotations

from finetuner_protocol.data.csv_reader import CSVOptions, read_text_csv
from finetuner_protocol.data.errors import DataError, Problem
from finetuner_protocol.data.records import Record
from finetuner_protocol.shapes import SHAPES, doc_shape


def text_records(indexed_docs: list, split: str, csv_options: CSVOptions) -> list[Record]:
    """The records of one split's CSV files (first) and item documents: ``indexed_docs`` holds
    ``(position in the request, document)``."""
    records: list[Record] = []
    for _, doc in indexed_docs:
        if getattr(doc, "kind", "item") == "csv":
            records.extend(read_text_csv(doc.blob or b"", doc.name or "data.csv", csv_options))
    problems = []
    for index, doc in indexed_docs:
        if getattr(doc, "kind", "item") == "item":
            try:
                records.append(item_record(doc, f"{split} document {index}"))
            except DataError as error:
                problems += error.problems
    if problems:
        raise DataError(split, problems)
    _check_one_shape(records, split)
    return records


def item_record(doc, where: str) -> Record:
    """The record one text item document holds, read by the shape the fields it fills mark
    (:func:`finetuner_protocol.shapes.doc_shape`)."""
    if getattr(doc, "text_pair", None) is not None and getattr(doc, "finetuner_label", None) is not None:
        reason = "holds a label (finetuner_label) and a second text (text_pair); a document is a labeled item or a pair"
        raise DataError(where, [Problem(where, reason)])
    return doc_shape(doc).read_doc(doc, where)


def _check_one_shape(records: list[Record], split: str) -> None:
    first: dict[str, str] = {}
    for record in records:
        first.setdefault(record.shape, record.source)
    if len(first) > 1:
        summary = ", ".join(f"{SHAPES[shape].description} (e.g. {where})" for shape, where in first.items())
        raise DataError(split, [Problem(split, f"mixed shapes: {summary}; a data set holds one shape")])
