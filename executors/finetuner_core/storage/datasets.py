"""Datasets: data uploaded in batches, each batch stored as it arrives, the whole checked when the last arrives.

An upload is named by its ``upload_key`` (the client's digest of the whole content): starting an upload that
was interrupted continues it (the batches already stored are reported, so the client sends only the rest), and
starting one that already finished returns the finished dataset. When every batch is there, the dataset is
validated as a whole and its content hash (over the stored rows and image bytes) computed; if the owner already
has a dataset with the same content, the new copy is dropped and the existing one returned: the same data is
stored once.

Each batch comes with what the client declared of it: its number of items and :func:`batch_sha256` of its
records. A request that holds a part of a batch only (a client that cut the batch into several requests) is
refused, and so is a batch sent again with other content; sent again with the same content, it changes nothing.
An upload that fails at commit is deleted with its batches. Layout::

    <root>/datasets.db                       datasets and their stored batches
    <root>/<dataset_id>/part-<index>.jsonl   the rows of one batch (shapes.to_row)
    <root>/<dataset_id>/images/              the batches' images as PNG files
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from finetuner_core.storage.database import Database
from finetuner_core.storage.rows import atomic_write, image_writer, json_rows, read_records, rows_text
from finetuner_protocol.data.digest import batch_sha256 as batch_sha256
from finetuner_protocol.ids import DATASET_ID as DATASET_ID
from finetuner_protocol.ids import UPLOAD_KEY, is_dataset_id

NAME = re.compile(r"^[^\x00-\x1f/\\]{1,200}$")
UPLOADING, READY = "UPLOADING", "READY"

SCHEMA = """
CREATE TABLE IF NOT EXISTS datasets (
    id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    name TEXT NOT NULL,
    upload_key TEXT NOT NULL,
    status TEXT NOT NULL,
    batches INTEGER NOT NULL,
    items INTEGER NOT NULL DEFAULT 0,
    bytes INTEGER NOT NULL DEFAULT 0,
    content_sha256 TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS datasets_by_owner ON datasets (owner, upload_key);
CREATE TABLE IF NOT EXISTS parts (
    dataset_id TEXT NOT NULL,
    idx INTEGER NOT NULL,
    items INTEGER NOT NULL,
    bytes INTEGER NOT NULL,
    sha256 TEXT,
    PRIMARY KEY (dataset_id, idx)
);
"""
ONE_REQUEST = "post each batch in one request (request_size >= the batch size)"


class DatasetNotFoundError(LookupError):
    """No dataset with this id (or it belongs to another user)."""


class DatasetStore:
    def __init__(self, root: str | Path, max_bytes: int = 10 * 1024**3):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.db = Database(self.root / "datasets.db", SCHEMA)
        self.max_bytes = max_bytes
        with self.db.transaction() as connection:  # a datasets.db from before batches had digests
            if "sha256" not in {row["name"] for row in connection.execute("PRAGMA table_info(parts)")}:
                connection.execute("ALTER TABLE parts ADD COLUMN sha256 TEXT")

    def begin(self, owner: str, name: str, upload_key: str, batches: int) -> dict[str, Any]:
        """The dataset this upload fills: a finished one with the same key, an interrupted one, or a new one."""
        if not isinstance(upload_key, str) or not UPLOAD_KEY.match(upload_key):
            raise ValueError("upload_key must be 64 hexadecimal digits (a SHA-256)")
        if not isinstance(name, str) or not NAME.match(name):
            raise ValueError(f"dataset name {name!r}: 1 to 200 characters, no control characters or slashes")
        if not isinstance(batches, int) or batches < 1:
            raise ValueError(f"batches must be a positive integer, got {batches!r}")
        existing = self.db.row(
            "SELECT * FROM datasets WHERE owner = ? AND upload_key = ? ORDER BY status = 'READY' DESC, created_at",
            (owner, upload_key),
        )
        if existing is not None and (existing["status"] == READY or existing["batches"] == batches):
            return self.describe(existing["id"], owner)
        dataset_id = "ds-" + uuid.uuid4().hex[:16]
        now = time.time()
        with self.db.transaction() as connection:
            connection.execute(
                "INSERT INTO datasets (id, owner, name, upload_key, status, batches, created_at, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (dataset_id, owner, name, upload_key, UPLOADING, batches, now, now),
            )
        (self.root / dataset_id / "images").mkdir(parents=True, exist_ok=True)
        return self.describe(dataset_id, owner)

    def put_batch(
        self, dataset_id: str, owner: str, index: int, records: list, items: object, sha256: object
    ) -> dict[str, Any]:
        """Store batch ``index``, whose client declared ``items`` records of digest ``sha256``
        (:func:`batch_sha256`). Refused when the records are not what was declared, or when the batch was
        stored before with other content; the same content again changes nothing."""
        dataset = self._record(dataset_id, owner)
        if dataset["status"] == READY:
            return self.describe(dataset_id, owner)
        if not isinstance(index, int) or not 0 <= index < dataset["batches"]:
            raise ValueError(f"batch index must be in [0, {dataset['batches']}), got {index!r}")
        where = f"batch {index} of dataset {dataset_id}"
        content = _check_declared(where, records, items, sha256)
        stored = self.db.row("SELECT sha256 FROM parts WHERE dataset_id = ? AND idx = ?", (dataset_id, index))
        if stored is not None and stored["sha256"] == content:
            return self.describe(dataset_id, owner)
        if stored is not None and stored["sha256"] is not None:
            raise ValueError(f"{where} was already stored with other content: {ONE_REQUEST}")
        folder = self.root / dataset_id
        for stale in folder.glob(f"images/{index:06d}-*.png"):
            stale.unlink()
        text = rows_text(records, image_writer(folder, f"{index:06d}-"))
        size = len(text.encode("utf-8")) + sum(p.stat().st_size for p in folder.glob(f"images/{index:06d}-*.png"))
        others = self.db.row(
            "SELECT COALESCE(SUM(bytes), 0) AS n FROM parts WHERE dataset_id = ? AND idx != ?", (dataset_id, index)
        )
        if others["n"] + size > self.max_bytes:
            for image in folder.glob(f"images/{index:06d}-*.png"):
                image.unlink()
            raise ValueError(f"dataset {dataset_id} would exceed the upload limit of {self.max_bytes} bytes")
        atomic_write(folder / f"part-{index:06d}.jsonl", text)
        with self.db.transaction() as connection:
            connection.execute(
                "INSERT OR REPLACE INTO parts (dataset_id, idx, items, bytes, sha256) VALUES (?, ?, ?, ?, ?)",
                (dataset_id, index, len(records), size, content),
            )
            connection.execute("UPDATE datasets SET updated_at = ? WHERE id = ?", (time.time(), dataset_id))
        return self.describe(dataset_id, owner)

    def commit(self, dataset_id: str, owner: str, validate: Callable[[list], None]) -> dict[str, Any]:
        """Validate the whole dataset once all batches are stored; the stored dataset (maybe an older copy)."""
        dataset = self.describe(dataset_id, owner)
        if dataset["status"] == READY:
            return dataset
        if dataset["missing"]:
            raise ValueError(f"dataset {dataset_id} lacks batches {dataset['missing'][:10]}")
        try:  # a dataset that cannot be read back or fails the whole-set checks is not kept
            validate(self.records(dataset_id, owner, ready=False))
            content = self._content_sha256(dataset_id)
        except Exception:
            self.delete(dataset_id, owner)
            raise
        same = self.db.row(
            "SELECT id FROM datasets WHERE owner = ? AND content_sha256 = ? AND status = ?", (owner, content, READY)
        )
        if same is not None:
            self.delete(dataset_id, owner)
            return self.describe(same["id"], owner)
        with self.db.transaction() as connection:
            connection.execute(
                "UPDATE datasets SET status = ?, content_sha256 = ?, updated_at = ?, "
                "items = (SELECT SUM(items) FROM parts WHERE dataset_id = ?), "
                "bytes = (SELECT SUM(bytes) FROM parts WHERE dataset_id = ?) WHERE id = ?",
                (READY, content, time.time(), dataset_id, dataset_id, dataset_id),
            )
        return self.describe(dataset_id, owner)

    def describe(self, dataset_id: str, owner: str | None) -> dict[str, Any]:
        row = self._record(dataset_id, owner)
        stored = [
            r["idx"] for r in self.db.rows("SELECT idx FROM parts WHERE dataset_id = ? ORDER BY idx", (row["id"],))
        ]
        missing = sorted(set(range(row["batches"])) - set(stored))
        fields = ("id", "name", "status", "batches", "items", "bytes", "content_sha256", "created_at", "updated_at")
        return {**{field: row[field] for field in fields}, "stored": stored, "missing": missing}

    def records(self, dataset_id: str, owner: str | None, ready: bool = True) -> list:
        """Every record of the dataset, batch by batch."""
        dataset = self._record(dataset_id, owner)
        if ready and dataset["status"] != READY:
            raise ValueError(f"dataset {dataset_id} is not complete yet ({dataset['status']})")
        folder = self.root / dataset_id
        return [record for part in sorted(folder.glob("part-*.jsonl")) for record in read_records(folder, part)]

    def list(self, owner: str) -> list[dict[str, Any]]:
        rows = self.db.rows("SELECT id FROM datasets WHERE owner = ? ORDER BY created_at", (owner,))
        return [self.describe(row["id"], owner) for row in rows]

    def delete(self, dataset_id: str, owner: str | None) -> None:
        self._record(dataset_id, owner)
        with self.db.transaction() as connection:
            connection.execute("DELETE FROM parts WHERE dataset_id = ?", (dataset_id,))
            connection.execute("DELETE FROM datasets WHERE id = ?", (dataset_id,))
        shutil.rmtree(self.root / dataset_id, ignore_errors=True)

    def _record(self, dataset_id: str, owner: str | None) -> dict[str, Any]:
        row = self.db.row("SELECT * FROM datasets WHERE id = ?", (dataset_id,)) if is_dataset_id(dataset_id) else None
        if row is None or (owner is not None and row["owner"] != owner):
            raise DatasetNotFoundError(f"dataset {dataset_id!r} not found")
        return row

    def _content_sha256(self, dataset_id: str) -> str:
        """A digest of the rows and of the image bytes they name, batch by batch."""
        folder = self.root / dataset_id
        digest = hashlib.sha256()
        for part in sorted(folder.glob("part-*.jsonl")):
            for row in json_rows(part):
                image = row.pop("image", None)
                digest.update(json.dumps(row, sort_keys=True).encode("utf-8"))
                if image is not None:
                    digest.update(hashlib.sha256((folder / image).read_bytes()).digest())
        return digest.hexdigest()


def _check_declared(where: str, records: list, items: object, sha256: object) -> str:
    """The records' :func:`batch_sha256`, when they are the ``items`` records of digest ``sha256`` declared."""
    if isinstance(items, float) and items.is_integer():  # gRPC parameters carry every number as a float
        items = int(items)
    if not isinstance(items, int) or isinstance(items, bool) or not isinstance(sha256, str):
        raise ValueError(f"{where}: declare its number of items and its sha256 (dataset.items, dataset.sha256)")
    if items != len(records):
        raise ValueError(f"{where} was declared with {items} items, this request holds {len(records)}: {ONE_REQUEST}")
    content = batch_sha256(records)
    if sha256 != content:
        raise ValueError(f"{where} does not match the sha256 declared for it: {ONE_REQUEST}")
    return content
