"""Runs: their state in SQLite, their files in one folder per run.

State (``<root>/runs.db``): each run's owner, experiment, name, status (with the error of a failed run) and times;
its log lines; its metrics per evaluation stage (``before``, ``step N``, ``after``); the experiments. Files::

    <root>/<run_id>/config.json     the validated FitConfig
                   /train.jsonl      accepted training data, a JSON row per item (shapes.to_row)
                   /eval.jsonl       accepted evaluation data (optional)
                   /images/          the data's images as PNG files, named by the rows
                   /checkpoint/      the latest training checkpoint, while the run trains (kept after its end
                                     only with FitConfig.keep_checkpoint)
                   /model/           the artifact (with manifest.json: every file's size and sha256)

Run ids are generated here and checked against :data:`RUN_ID` before they become paths; a run of another owner
is "not found", exactly like a run that does not exist. A run's folder is written in a staging folder and
renamed in place in the same transaction that records the run, so a run is stored whole or not at all.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from finetuner_core.storage.database import Database
from finetuner_core.storage.rows import atomic_write, image_writer, read_records, rows_text
from finetuner_protocol.data.records import LabeledItem, PairItem
from finetuner_protocol.ids import RUN_ID, is_run_id
from finetuner_protocol.logs import LogRecord, as_record
from finetuner_protocol.runs import RunStatus

if TYPE_CHECKING:
    from finetuner_core.config import FitConfig

Item = LabeledItem | PairItem

EXPERIMENT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
DEFAULT_EXPERIMENT = "default"

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    experiment TEXT NOT NULL,
    name TEXT,
    status TEXT NOT NULL,
    error TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    cancel_requested INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS runs_by_owner ON runs (owner, created_at);
CREATE TABLE IF NOT EXISTS experiments (
    owner TEXT NOT NULL,
    name TEXT NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (owner, name)
);
CREATE TABLE IF NOT EXISTS logs (
    run_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    time REAL NOT NULL,
    message TEXT NOT NULL,
    record TEXT,
    PRIMARY KEY (run_id, seq)
);
CREATE TABLE IF NOT EXISTS metrics (
    run_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    stage TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (run_id, stage)
);
"""


def runs_root(setting: str, default: str) -> Path:
    """Where runs live: an executor's setting, else $FINETUNER_WORKSPACE, else ``default``; then ``/runs``."""
    return Path(setting or os.environ.get("FINETUNER_WORKSPACE") or default) / "runs"


class RunNotFoundError(LookupError):
    """No run with this id exists in the workspace (or it belongs to another user)."""


class RunStore:
    """Reads and writes runs under ``root``. Safe to use from several threads and processes."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.db = Database(self.root / "runs.db", SCHEMA)
        with self.db.transaction() as connection:  # a runs.db from before cancel requests were stored
            if "cancel_requested" not in {row["name"] for row in connection.execute("PRAGMA table_info(runs)")}:
                connection.execute("ALTER TABLE runs ADD COLUMN cancel_requested INTEGER NOT NULL DEFAULT 0")
            if "record" not in {row["name"] for row in connection.execute("PRAGMA table_info(logs)")}:
                connection.execute("ALTER TABLE logs ADD COLUMN record TEXT")  # from before logs held records

    def create(
        self,
        config: FitConfig,
        train: list[Item],
        eval_data: list[Item],
        owner: str = "",
        experiment: str = DEFAULT_EXPERIMENT,
    ) -> str:
        """Store a new run with its data (images as PNG files), all or nothing, and return its id."""
        _check_experiment(experiment)
        run_id = uuid.uuid4().hex[:16]
        staging = self.root / f".{run_id}.tmp"
        (staging / "images").mkdir(parents=True)
        try:
            atomic_write(staging / "config.json", json.dumps(config.model_dump(mode="json"), indent=2))
            save_image = image_writer(staging)
            atomic_write(staging / "train.jsonl", rows_text(train, save_image))
            if eval_data:
                atomic_write(staging / "eval.jsonl", rows_text(eval_data, save_image))
            now = time.time()
            with self.db.transaction() as connection:
                connection.execute(
                    "INSERT OR IGNORE INTO experiments (owner, name, created_at) VALUES (?, ?, ?)",
                    (owner, experiment, now),
                )
                connection.execute(
                    "INSERT INTO runs (id, owner, experiment, name, status, created_at, updated_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (run_id, owner, experiment, config.run_name, RunStatus.CREATED, now, now),
                )
                os.replace(staging, self.root / run_id)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return run_id

    def path(self, run_id: str, owner: str | None = None) -> Path:
        """The run's folder; :class:`RunNotFoundError` for an unknown id, or a run of another ``owner``."""
        self._record(run_id, owner)
        return self.root / run_id

    def require(self, run_id: str, owner: str | None) -> str:
        """``run_id`` when it exists and belongs to ``owner`` (None: anyone), else :class:`RunNotFoundError`."""
        self._record(run_id, owner)
        return run_id

    def list_ids(self, owner: str | None = None) -> list[str]:
        return [run["run_id"] for run in self.list(owner, limit=None)]

    def list(
        self,
        owner: str | None = None,
        experiment: str | None = None,
        status: str | None = None,
        offset: int = 0,
        limit: int | None = 50,
    ) -> list[dict[str, Any]]:
        """Runs oldest first, with their status records, filtered and paged."""
        where, arguments = _filters(owner=owner, experiment=experiment, status=status)
        page = "" if limit is None else f" LIMIT {int(limit)} OFFSET {int(offset)}"
        rows = self.db.rows(f"SELECT * FROM runs{where} ORDER BY created_at, id{page}", arguments)
        return [_status_record(row) for row in rows]

    def count(self, owner: str | None = None, experiment: str | None = None, status: str | None = None) -> int:
        where, arguments = _filters(owner=owner, experiment=experiment, status=status)
        return self.db.row(f"SELECT COUNT(*) AS n FROM runs{where}", arguments)["n"]

    def config(self, run_id: str) -> FitConfig:
        from finetuner_core.config import FitConfig  # the fit settings load the training code: only when read

        return FitConfig.model_validate_json((self.path(run_id) / "config.json").read_text("utf-8"))

    def set_model_source(self, run_id: str, source: dict[str, Any]) -> None:
        """Record in the run's config where its model came from (known whole once the model is built: a
        download's commit, a digest)."""
        config = self.config(run_id).model_copy(update={"model_source": source})
        atomic_write(self.path(run_id) / "config.json", json.dumps(config.model_dump(mode="json"), indent=2))

    def data(self, run_id: str, split: str) -> list[Item]:
        folder = self.path(run_id)
        path = folder / f"{split}.jsonl"
        return read_records(folder, path) if path.exists() else []

    def status(self, run_id: str) -> dict[str, Any]:
        return _status_record(self._record(run_id))

    def set_status(self, run_id: str, status: RunStatus, error: str | None = None) -> None:
        self.set_status_if(run_id, status, error=error)

    def set_status_if(
        self, run_id: str, status: RunStatus, current: tuple[RunStatus, ...] | None = None, error: str | None = None
    ) -> bool:
        """Set the run's status if its status now is one of ``current`` (None: whatever it is); whether it did.
        The test and the change are one transaction."""
        now = time.time()
        started = now if status == RunStatus.STARTED else None
        finished = now if RunStatus(status).is_final else None
        only = "" if current is None else f" AND status IN ({', '.join('?' for _ in current)})"
        with self.db.transaction() as connection:
            return bool(
                connection.execute(
                    "UPDATE runs SET status = ?, error = COALESCE(?, error), updated_at = ?, "
                    f"started_at = COALESCE(?, started_at), finished_at = COALESCE(?, finished_at) WHERE id = ?{only}",
                    (str(status), error, now, started, finished, run_id, *(str(c) for c in current or ())),
                ).rowcount
            )

    def request_cancel(self, run_id: str) -> None:
        """A run that has not started ends CANCELLED now; a started one is marked to stop (``cancel_requested``),
        which outlives a restart of the trainer."""
        if not self.set_status_if(run_id, RunStatus.CANCELLED, (RunStatus.CREATED, RunStatus.QUEUED)):
            with self.db.transaction() as connection:
                connection.execute(
                    "UPDATE runs SET cancel_requested = 1 WHERE id = ? AND status = ?", (run_id, RunStatus.STARTED)
                )

    def cancel_requested(self, run_id: str) -> bool:
        return bool(self._record(run_id)["cancel_requested"])

    def log(self, run_id: str, entry: LogRecord | str) -> None:
        """Append ``entry`` (a structured record, or a text line: a ``message``) to the run's log: its text line and
        its fields."""
        record = as_record(entry)
        with self.db.transaction() as connection:
            connection.execute(
                "INSERT INTO logs (run_id, seq, time, message, record) "
                "SELECT ?, COALESCE(MAX(seq) + 1, 0), ?, ?, ? FROM logs WHERE run_id = ?",
                (run_id, time.time(), record.text(), record.model_dump_json(), run_id),
            )

    def logs(self, run_id: str, since: int = 0) -> list[dict[str, Any]]:
        """Log entries from index ``since`` on: ``time``, ``message`` (the text line) and ``record`` (its fields,
        finetuner_protocol.logs; None for an entry written before logs held records)."""
        self._record(run_id)
        rows = self.db.rows(
            "SELECT time, message, record FROM logs WHERE run_id = ? AND seq >= ? ORDER BY seq", (run_id, int(since))
        )
        return [{**row, "record": json.loads(row["record"]) if row["record"] else None} for row in rows]

    def set_metrics(self, run_id: str, stage: str, metrics: dict[str, Any]) -> None:
        with self.db.transaction() as connection:
            connection.execute(
                "INSERT INTO metrics (run_id, seq, stage, value) "
                "SELECT ?, COALESCE(MAX(seq) + 1, 0), ?, ? FROM metrics WHERE run_id = ? "
                "ON CONFLICT (run_id, stage) DO UPDATE SET value = excluded.value",
                (run_id, stage, json.dumps(metrics), run_id),
            )

    def metrics(self, run_id: str) -> dict[str, Any]:
        """``{stage: {metric: value}}`` in the order the stages were first recorded."""
        self._record(run_id)
        rows = self.db.rows("SELECT stage, value FROM metrics WHERE run_id = ? ORDER BY seq", (run_id,))
        return {row["stage"]: json.loads(row["value"]) for row in rows}

    def artifact_dir(self, run_id: str) -> Path:
        return self.path(run_id) / "model"

    def delete(self, run_id: str, owner: str | None = None) -> None:
        """Forget a run that has ended, with its files, logs and metrics."""
        record = self._record(run_id, owner)
        if not RunStatus(record["status"]).is_final:
            raise ValueError(f"run {run_id} is {record['status']}: cancel it before deleting it")
        with self.db.transaction() as connection:
            for table, column in (("logs", "run_id"), ("metrics", "run_id"), ("runs", "id")):
                connection.execute(f"DELETE FROM {table} WHERE {column} = ?", (run_id,))
        shutil.rmtree(self.root / run_id, ignore_errors=True)

    def create_experiment(self, owner: str, name: str) -> dict[str, Any]:
        _check_experiment(name)
        with self.db.transaction() as connection:
            connection.execute(
                "INSERT OR IGNORE INTO experiments (owner, name, created_at) VALUES (?, ?, ?)",
                (owner, name, time.time()),
            )
        return self.experiment(owner, name)

    def experiment(self, owner: str, name: str) -> dict[str, Any]:
        row = self.db.row("SELECT name, created_at FROM experiments WHERE owner = ? AND name = ?", (owner, name))
        if row is None:
            raise LookupError(f"experiment {name!r} not found")
        return {**row, "runs": self.count(owner, experiment=name)}

    def list_experiments(self, owner: str) -> list[dict[str, Any]]:
        rows = self.db.rows("SELECT name FROM experiments WHERE owner = ? ORDER BY created_at, name", (owner,))
        return [self.experiment(owner, row["name"]) for row in rows]

    def delete_experiment(self, owner: str, name: str) -> None:
        """Delete an experiment and its runs; refused while one of them has not ended."""
        self.experiment(owner, name)
        runs = self.list(owner, experiment=name, limit=None)
        active = [run["run_id"] for run in runs if not RunStatus(run["status"]).is_final]
        if active:
            raise ValueError(f"experiment {name!r} has runs that have not ended: {', '.join(active)}")
        for run in runs:
            self.delete(run["run_id"], owner)
        with self.db.transaction() as connection:
            connection.execute("DELETE FROM experiments WHERE owner = ? AND name = ?", (owner, name))

    def _record(self, run_id: str, owner: str | None = None) -> dict[str, Any]:
        row = self.db.row("SELECT * FROM runs WHERE id = ?", (run_id,)) if is_run_id(run_id) else None
        if row is None or (owner is not None and row["owner"] != owner):
            raise RunNotFoundError(f"run {run_id!r} not found")
        return row

    def sweep(self) -> None:
        """Remove staging folders and folders of runs the database does not know (a crash mid-create). Only
        when no other process creates runs in this store (the trainer calls it when it starts)."""
        known = {row["id"] for row in self.db.rows("SELECT id FROM runs")}
        for path in self.root.iterdir():
            staging = path.name.startswith(".") and path.name.endswith(".tmp")
            if path.is_dir() and (staging or (RUN_ID.match(path.name) and path.name not in known)):
                shutil.rmtree(path, ignore_errors=True)


def _check_experiment(name: str) -> None:
    if not isinstance(name, str) or not EXPERIMENT_NAME.match(name):
        raise ValueError(f"experiment name {name!r}: letters, digits and _.- only, 1 to 100 characters")


def _filters(**conditions: Any) -> tuple[str, tuple]:
    used = {column: value for column, value in conditions.items() if value is not None}
    if not used:
        return "", ()
    return " WHERE " + " AND ".join(f"{column} = ?" for column in used), tuple(used.values())


def _status_record(row: dict[str, Any]) -> dict[str, Any]:
    record = {
        "run_id": row["id"],
        "name": row["name"],
        "experiment": row["experiment"],
        "status": row["status"],
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
        "started_at": row["started_at"],
        "finished_at": row["finished_at"],
    }
    if row["error"] is not None:
        record["error"] = row["error"]
    return record
