"""A run on the Flow, as Finetuner's ``Run``: status, logs, metrics, artifact."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from finetuner.errors import FinetunerError
from finetuner.transport import Transport

FINAL = {"FINISHED", "FAILED", "CANCELLED"}


class Run:
    def __init__(self, transport: Transport, run_id: str, name: str | None = None):
        self._transport = transport
        self.id = run_id
        self.name = name

    def __repr__(self) -> str:
        return f"Run(id={self.id!r}, name={self.name!r})"

    def info(self) -> dict[str, Any]:
        """Status record: ``status``, ``error`` (when FAILED), ``created_at``, ``updated_at``."""
        return self._transport.result("/runs/status", run_id=self.id)

    def status(self) -> str:
        """CREATED, QUEUED, STARTED, FINISHED, FAILED or CANCELLED."""
        return self.info()["status"]

    def logs(self) -> str:
        """Every log line so far, one per line."""
        entries = self._transport.result("/runs/logs", run_id=self.id)["logs"]
        return "\n".join(entry["message"] for entry in entries)

    def stream_logs(self, interval_s: float = 1.0) -> Iterator[str]:
        """Yield log lines as they are written, until the run ends."""
        since = 0
        while True:
            answer = self._transport.result("/runs/logs", run_id=self.id, since=since)
            for entry in answer["logs"]:
                yield entry["message"]
            since += len(answer["logs"])
            if answer["status"] in FINAL and not answer["logs"]:
                return
            time.sleep(0 if answer["logs"] else interval_s)

    def wait(self, interval_s: float = 1.0, timeout_s: float | None = None) -> str:
        """Block until the run ends; return its final status."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while (status := self.status()) not in FINAL:
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"run {self.id} still {status} after {timeout_s}s")
            time.sleep(interval_s)
        return status

    def metrics(self) -> dict[str, dict[str, float]]:
        """Retrieval metrics on the evaluation data: ``{"before": {...}, "after": {...}}``."""
        return self._transport.result("/runs/metrics", run_id=self.id)

    def cancel(self) -> None:
        self._transport.result("/runs/cancel", run_id=self.id)

    def save_artifact(self, directory: str | Path) -> Path:
        """Download the tuned model into ``directory`` in chunks, checking every file's sha256."""
        directory = Path(directory)
        files = self._transport.result("/runs/artifact", run_id=self.id)["files"]
        for entry in files:
            target = directory / entry["path"]
            if not target.resolve().is_relative_to(directory.resolve()):
                raise FinetunerError(f"refusing artifact path {entry['path']!r}")
            target.parent.mkdir(parents=True, exist_ok=True)
            self._download(entry, target)
        return directory

    def _download(self, entry: dict[str, Any], target: Path) -> None:
        digest = hashlib.sha256()
        with open(target, "wb") as file:
            offset = 0
            while offset < entry["size"]:
                docs = self._transport.post("/runs/artifact", run_id=self.id, path=entry["path"], offset=offset)
                chunk = docs[0].blob or b""
                if not chunk:
                    raise FinetunerError(f"artifact file {entry['path']} ended early at byte {offset}")
                file.write(chunk)
                digest.update(chunk)
                offset += len(chunk)
        if digest.hexdigest() != entry["sha256"]:
            raise FinetunerError(f"artifact file {entry['path']} failed its checksum")
