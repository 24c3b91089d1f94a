"""Datasets on the Flow: data checked here first, then uploaded in batches, resumably.

The data are parsed and validated locally with the same code the Flow runs (so a bad row is reported before
anything is sent), turned into item documents, cut into batches, and named by an upload key: the SHA-256 of the
batches' digests. Each batch is sent in one request with its number of items and the digest of its records
(``finetuner_protocol.data.digest.batch_sha256``), which the trainer checks. Starting the same upload again
(after an interruption) sends only the batches the trainer does not have yet; uploading data it already holds
returns the stored dataset. An upload the Flow refuses (a batch, or the whole set at commit) is deleted.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from typing import Any

import numpy as np
from rich.progress import Progress

from finetuner.data import to_wire_docs
from finetuner.errors import ServerError
from finetuner.transport import Transport
from finetuner_protocol import endpoints
from finetuner_protocol.data.digest import batch_sha256
from finetuner_protocol.data.intake import parse_data
from finetuner_protocol.settings import FitSettings
from finetuner_protocol.wire import FinetunerDoc, record_docs

BATCH_ITEMS = 512
BATCH_BYTES = 8 * 1024 * 1024


def upload(
    transport: Transport,
    data: Any,
    config: FitSettings,
    name: str,
    quiet: bool = False,
    batch_items: int = BATCH_ITEMS,
    batch_bytes: int = BATCH_BYTES,
    stop_after: int | None = None,
) -> dict[str, Any]:
    """Upload ``data`` (anything ``fit`` takes) as a dataset; its description (``id``, ``items``, ...).

    ``stop_after`` sends only that many batches and returns the unfinished upload (to test resuming)."""
    docs = to_wire_docs(data, "train", config.modality, config.csv_options.is_labeled)
    records = parse_data(docs, config.modality, config.csv_options, min_items_per_class=1)["train"]
    batches = list(_batches(list(record_docs({"train": records})), batch_items, batch_bytes))
    key = hashlib.sha256("".join(digest(batch) for batch in batches).encode()).hexdigest()
    upload = {"name": name, "upload_key": key, "batches": len(batches)}
    dataset = transport.result(endpoints.DATASETS_BEGIN, dataset=upload)
    if dataset["status"] == "READY":
        return dataset
    try:
        return _send(transport, dataset, upload, batches, records, config, quiet, stop_after)
    except ServerError:  # refused: nothing of it is kept (an interrupted upload stays, to be resumed)
        try:
            transport.result(endpoints.DATASETS_DELETE, dataset_id=dataset["id"])
        except ServerError:
            pass  # deleted already (a commit that fails deletes the upload)
        raise


def _send(
    transport: Transport,
    dataset: dict[str, Any],
    upload: dict[str, Any],
    batches: list[list[FinetunerDoc]],
    records: list,
    config: FitSettings,
    quiet: bool,
    stop_after: int | None,
) -> dict[str, Any]:
    """Send the batches the trainer lacks, each with its item count and digest, then commit."""
    starts = [0]
    for batch in batches:
        starts.append(starts[-1] + len(batch))
    settings = config.model_dump(mode="json")
    missing = dataset["missing"] if stop_after is None else dataset["missing"][:stop_after]
    with Progress(disable=quiet, transient=True) as progress:
        task = progress.add_task(
            f"uploading {upload['name']}", total=len(batches), completed=len(batches) - len(missing)
        )
        for index in missing:
            declared = {
                "items": len(batches[index]),
                "sha256": batch_sha256(records[starts[index] : starts[index + 1]]),
            }
            transport.result(
                endpoints.DATASETS_UPLOAD,
                batches[index],
                dataset={"id": dataset["id"], "index": index, **declared},
                config=settings,
            )
            progress.advance(task)
    if stop_after is not None:
        return transport.result(endpoints.DATASETS_BEGIN, dataset=upload)
    return transport.result(endpoints.DATASETS_COMMIT, dataset={"id": dataset["id"]})


def _batches(docs: list[FinetunerDoc], max_items: int, max_bytes: int) -> Iterator[list[FinetunerDoc]]:
    batch: list[FinetunerDoc] = []
    size = 0
    for doc in docs:
        doc_size = len(doc.blob or b"") + len(doc.text or "") + (doc.tensor.nbytes if doc.tensor is not None else 0)
        if batch and (len(batch) >= max_items or size + doc_size > max_bytes):
            yield batch
            batch, size = [], 0
        batch.append(doc)
        size += doc_size
    if batch:
        yield batch


def digest(docs: list[FinetunerDoc]) -> str:
    """A SHA-256 of the documents' content (every field but the random ``id``), in order."""
    state = hashlib.sha256()
    for doc in docs:
        for field in sorted(type(doc).model_fields):
            value = getattr(doc, field)
            if field == "id" or value is None:
                continue
            state.update(field.encode())
            if isinstance(value, bytes):
                state.update(value)
            elif isinstance(value, np.ndarray):
                state.update(str(value.shape).encode() + np.ascontiguousarray(value).tobytes())
            else:
                state.update(json.dumps(value, default=str).encode())
    return state.hexdigest()
