"""A run on the Flow, as Finetuner's ``Run``: status, logs, metrics, artifact."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rich.progress import Progress

from finetuner.errors import ConnectionFailedError, FinetunerError
from finetuner.transport import Transport
from finetuner_protocol import endpoints
from finetuner_protocol.logs import LogRecord, read_record
from finetuner_protocol.runs import FINAL_STATUSES

RECONNECT_VARIABLE = "FINETUNER_RECONNECT_S"


class Run:
    def __init__(self, transport: Transport, run_id: str, name: str | None = None):
        self._transport = transport
        self.id = run_id
        self.name = name

    def __repr__(self) -> str:
        return f"Run(id={self.id!r}, name={self.name!r})"

    def info(self) -> dict[str, Any]:
        """Status record: ``status``, ``error`` (when FAILED), ``created_at``, ``updated_at``."""
        return self._transport.result(endpoints.RUNS_STATUS, run_id=self.id)

    def status(self) -> str:
        """CREATED, QUEUED, STARTED, FINISHED, FAILED or CANCELLED."""
        return self.info()["status"]

    def logs(self) -> str:
        """Every log line so far, one per line."""
        entries = self._transport.result(endpoints.RUNS_LOGS, run_id=self.id)["logs"]
        return "\n".join(entry["message"] for entry in entries)

    def records(self) -> list[LogRecord]:
        """Every log entry so far as a structured record (``finetuner_protocol.logs``: steps with their loss,
        evaluations with their metrics, ...)."""
        return [read_record(entry) for entry in self._transport.result(endpoints.RUNS_LOGS, run_id=self.id)["logs"]]

    def stream_logs(self, interval_s: float = 1.0, reconnect_s: float | None = None) -> Iterator[str]:
        """Yield log lines as they are written, until the run ends. A dropped connection (the Flow restarting,
        the network) is retried with back-off for up to ``reconnect_s`` seconds (5 minutes; the environment
        variable ``FINETUNER_RECONNECT_S`` sets another default), and streaming goes on from the last line received."""
        for entry in self._stream(interval_s, reconnect_s):
            yield entry["message"]

    def stream_records(self, interval_s: float = 1.0, reconnect_s: float | None = None) -> Iterator[LogRecord]:
        """As :meth:`stream_logs`, each entry as its structured record."""
        for entry in self._stream(interval_s, reconnect_s):
            yield read_record(entry)

    def _stream(self, interval_s: float, reconnect_s: float | None) -> Iterator[dict[str, Any]]:
        reconnect_s = reconnect_window() if reconnect_s is None else reconnect_s
        since = 0
        while True:
            try:
                answer = self._retrying(reconnect_s, endpoints.RUNS_LOGS, run_id=self.id, since=since)
            except ConnectionFailedError:
                raise ConnectionFailedError(
                    f"lost the Flow at {self._transport.host} for {reconnect_s:.0f} s while following run {self.id}: "
                    "stopped following (the run itself goes on; stream_logs() again to follow it)"
                ) from None
            yield from answer["logs"]
            since += len(answer["logs"])
            if answer["status"] in FINAL_STATUSES and not answer["logs"]:
                return
            time.sleep(0 if answer["logs"] else interval_s)

    def _retrying(self, patience_s: float, endpoint: str, **parameters: Any) -> dict[str, Any]:
        deadline = time.monotonic() + patience_s
        pause = 0.5
        while True:
            try:
                return self._transport.result(endpoint, **parameters)
            except ConnectionFailedError:
                if time.monotonic() + pause > deadline:
                    raise
                time.sleep(pause)
                pause = min(pause * 2, 5.0)

    def wait(self, interval_s: float = 1.0, timeout_s: float | None = None) -> str:
        """Block until the run ends; return its final status."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while (status := self.status()) not in FINAL_STATUSES:
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"run {self.id} still {status} after {timeout_s}s")
            time.sleep(interval_s)
        return status

    def metrics(self) -> dict[str, dict[str, float]]:
        """Retrieval metrics on the evaluation data: ``{"before": {...}, "after": {...}}``."""
        return self._transport.result(endpoints.RUNS_METRICS, run_id=self.id)

    def cancel(self) -> None:
        self._transport.result(endpoints.RUNS_CANCEL, run_id=self.id)

    def evaluate(self, eval_data: Any = None, **options: Any) -> dict:
        """This run's artifact evaluated in the Flow on ``eval_data``: see :func:`finetuner.evaluation.evaluate`."""
        from finetuner.evaluation import evaluate

        return evaluate(self._transport, eval_data, run_id=self.id, saved=self.info()["config"], **options)

    def report(self, directory: str | Path, eval_data: Any = None, **options: Any) -> Path:
        """Write this run's HTML report (``directory/index.html``); see :func:`finetuner.report.write_report`."""
        from finetuner.report import write_report

        return write_report(self, directory, eval_data, **options)

    def display_metrics(self, console: Any = None) -> Any:
        """Print (and return) the table of this run's metrics: before, after and the change."""
        from finetuner.report import display_metrics

        return display_metrics(self, console)

    def display_examples(self, eval_data: Any, examples: int = 3, k: int = 5, console: Any = None) -> list:
        """Print (and return) ``examples`` sample queries of ``eval_data`` with the tuned model's top ``k``
        results, each marked relevant or not (evaluated in the Flow)."""
        from finetuner.report import display_examples, sample_queries

        return display_examples(sample_queries(self, eval_data, examples, k)["examples"], console)

    @property
    def artifact_id(self) -> str:
        """What ``finetuner.get_model`` takes to fetch this run's model (the run id)."""
        return self.id

    def save_artifact(self, directory: str | Path, quiet: bool = True) -> Path:
        """Download the tuned model into ``directory`` in chunks, checking every file's sha256. Files already
        there and intact are kept; a file cut short by an interrupted download is continued."""
        directory = Path(directory)
        files = self._transport.result(endpoints.RUNS_ARTIFACT, run_id=self.id)["files"]
        with Progress(disable=quiet, transient=True) as progress:
            task = progress.add_task("downloading", total=sum(entry["size"] for entry in files))
            for entry in files:
                target = directory / entry["path"]
                if not target.resolve().is_relative_to(directory.resolve()):
                    raise FinetunerError(f"refusing artifact path {entry['path']!r}")
                target.parent.mkdir(parents=True, exist_ok=True)
                self._download(entry, target, lambda n: progress.advance(task, n))
        return directory

    def _download(self, entry: dict[str, Any], target: Path, advance) -> None:
        digest = hashlib.sha256()
        offset = 0
        if target.exists() and target.stat().st_size <= entry["size"]:
            with open(target, "rb") as file:
                for block in iter(lambda: file.read(1 << 20), b""):
                    digest.update(block)
            offset = target.stat().st_size
        else:
            target.unlink(missing_ok=True)
        advance(offset)
        with open(target, "ab") as file:
            while offset < entry["size"]:
                docs = self._transport.post(endpoints.RUNS_ARTIFACT, run_id=self.id, path=entry["path"], offset=offset)
                chunk = docs[0].blob or b""
                if not chunk:
                    raise FinetunerError(f"artifact file {entry['path']} ended early at byte {offset}")
                file.write(chunk)
                digest.update(chunk)
                offset += len(chunk)
                advance(len(chunk))
        if digest.hexdigest() != entry["sha256"]:
            target.unlink()
            raise FinetunerError(f"artifact file {entry['path']} failed its checksum (removed; download again)")


def reconnect_window() -> float:
    """How long ``stream_logs`` tries to reconnect: ``$FINETUNER_RECONNECT_S`` seconds, else 300."""
    value = os.environ.get(RECONNECT_VARIABLE) or "300"
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not seconds >= 0:
        raise FinetunerError(f"{RECONNECT_VARIABLE} must be a number of seconds >= 0, got {value!r}")
    return seconds
