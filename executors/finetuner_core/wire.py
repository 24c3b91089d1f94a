"""The document type that travels between the client and the executors (docarray v2, no jina).

One type serves every endpoint, so the three executors of the Flow chain without schema conversions:

- ``kind="item"``: one labeled item (``text`` + ``finetuner_label``; ``uri``/``tensor`` mark an image)
- ``kind="csv"``: a whole CSV file in ``blob``, called ``name``
- ``kind="result"``: an answer from an executor, as JSON in ``payload`` (plus ``blob`` for file chunks)

``split`` says whether an item or file is training (``train``) or evaluation (``eval``) data.
"""

# No `from __future__ import annotations` here: jina rebuilds this schema from the executors' endpoint
# descriptions, and string annotations make that fail (the gateway then never becomes ready).
import json
from typing import Any

from docarray import BaseDoc, DocList
from docarray.typing import NdArray


class FinetunerDoc(BaseDoc):
    kind: str = "item"
    split: str = "train"
    text: str | None = None
    finetuner_label: str | None = None
    uri: str | None = None
    tensor: NdArray | None = None
    blob: bytes | None = None
    name: str | None = None
    payload: str | None = None


def result_docs(payload: dict[str, Any], blob: bytes | None = None) -> DocList[FinetunerDoc]:
    """A one-document answer carrying ``payload`` as JSON."""
    return DocList[FinetunerDoc]([FinetunerDoc(kind="result", payload=json.dumps(payload), blob=blob)])


def read_result(docs: DocList[FinetunerDoc]) -> dict[str, Any]:
    """The payload of the first result document of an answer."""
    for doc in docs:
        if doc.kind == "result" and doc.payload is not None:
            return json.loads(doc.payload)
    raise ValueError("the answer holds no result document")
