"""The document type that travels between the client and the executors (docarray v2, no jina).

One type serves every endpoint, so the three executors of the Flow chain without schema conversions:

- ``kind="item"``: one item: ``text``, or an image (encoded bytes in ``blob``, a data URI in ``uri``, or pixels in
  ``tensor``), or a vector (1-d ``tensor``), with ``finetuner_label``; a text-image pair has ``text`` and an image;
  a query-document pair has ``text`` (the query) and ``text_pair`` (the document); a scored pair has ``text``,
  ``text_pair`` and ``score``
- ``kind="csv"``: a whole CSV file in ``blob``, called ``name``
- ``kind="file"``: an image file named by a CSV, in ``blob``, called by the path the CSV uses
- ``kind="result"``: an answer from an executor, as JSON in ``payload`` (plus ``blob`` for file chunks)

``split`` says whether an item or file is training (``train``) or evaluation (``eval``) data.
"""

# No `from __future__ import annotations` here: jina rebuilds this schema from the executors' endpoint
# descriptions, and string annotations make that fail (the gateway then never becomes ready).
import json
from typing import Any

from docarray import BaseDoc, DocList
from docarray.typing import NdArray

from finetuner_protocol.shapes import SHAPES


class FinetunerDoc(BaseDoc):
    kind: str = "item"
    split: str = "train"
    text: str | None = None
    text_pair: str | None = None  # the second text of a pair: a query's document, or a scored pair's other text
    score: float | None = None  # the gold similarity of a scored pair
    finetuner_label: str | None = None
    uri: str | None = None
    tensor: NdArray | None = None
    blob: bytes | None = None
    name: str | None = None
    payload: str | None = None
    role: str | None = None  # evaluation items: "query", "index", or None (both)


def record_docs(splits: dict[str, list]) -> DocList[FinetunerDoc]:
    """Validated records (labeled texts, images or vectors; text-image, query-document or scored pairs) as item
    documents."""
    return DocList[FinetunerDoc](_record_doc(split, record) for split, records in splits.items() for record in records)


def _record_doc(split: str, record) -> FinetunerDoc:
    return FinetunerDoc(split=split, **SHAPES[record.shape].to_doc(record))


def result_docs(payload: dict[str, Any], blob: bytes | None = None) -> DocList[FinetunerDoc]:
    """A one-document answer carrying ``payload`` as JSON."""
    return DocList[FinetunerDoc]([FinetunerDoc(kind="result", payload=json.dumps(payload), blob=blob)])


def read_result(docs: DocList[FinetunerDoc]) -> dict[str, Any]:
    """The payload of the first result document of an answer."""
    for doc in docs:
        if doc.kind == "result" and doc.payload is not None:
            return json.loads(doc.payload)
    raise ValueError("the answer holds no result document")
