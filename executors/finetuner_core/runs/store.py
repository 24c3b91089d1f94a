"""A run's files in the workspace: config, data, status, logs, metrics and the model artifact.

Layout (one folder per run)::

    <root>/<run_id>/config.json     the validated FitConfig
                   /train.jsonl      accepted training data, a JSON row per item (data.records.to_row)
                   /eval.jsonl       accepted evaluation data (optional)
                   /images/          the data's images as PNG files, named by the rows
                   /status.json      {"status", "error", "created_at", "updated_at"}
                   /logs.jsonl       {"time", "message"} per line
                   /metrics.json     {"before": {...}, "after": {...}}
                   /model/           the artifact, a sentence-transformers folder

Run ids are generated here and checked against :data:`RUN_ID` before they become paths. Files are written
atomically (write to a temporary file, then rename), so a reader never sees half a file.
"""

from __future__ import annotations

import enum
import json
import os
import re
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from PIL import Image

from finetuner_core.config import FitConfig
from finetuner_core.data.images import image_from_png_bytes, image_to_png_bytes
from finetuner_core.data.records import LabeledItem, PairItem, from_row, to_row

Item = LabeledItem | PairItem

RUN_ID = re.compile(r"^[0-9a-f]{16}$")


class RunStatus(enum.StrEnum):
    CREATED = "CREATED"
    QUEUED = "QUEUED"
    STARTED = "STARTED"
    FINISHED = "FINISHED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def is_final(self) -> bool:
        return self in (RunStatus.FINISHED, RunStatus.FAILED, RunStatus.CANCELLED)


def runs_root(setting: str, default: str) -> Path:
    """Where runs live: an executor's setting, else $FINETUNER_WORKSPACE, else ``default``; then ``/runs``."""
    return Path(setting or os.environ.get("FINETUNER_WORKSPACE") or default) / "runs"


class RunNotFoundError(LookupError):
    """No run with this id exists in the workspace."""


class RunStore:
    """Reads and writes runs under ``root``. Safe to use from several threads."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def create(self, config: FitConfig, train: list[Item], eval_data: list[Item]) -> str:
        """Store a new run with its data (images as PNG files), all or nothing, and return its id."""
        run_id = uuid.uuid4().hex[:16]
        staging = self.root / f".{run_id}.tmp"
        (staging / "images").mkdir(parents=True)
        _write_json(staging / "config.json", config.model_dump(mode="json"))
        save_image = _image_writer(staging)
        _write_jsonl(staging / "train.jsonl", [to_row(r, save_image) for r in train])
        if eval_data:
            _write_jsonl(staging / "eval.jsonl", [to_row(r, save_image) for r in eval_data])
        now = time.time()
        _write_json(staging / "status.json", {"status": RunStatus.CREATED, "created_at": now, "updated_at": now})
        os.replace(staging, self.root / run_id)
        return run_id

    def path(self, run_id: str) -> Path:
        if not isinstance(run_id, str) or not RUN_ID.match(run_id) or not (self.root / run_id).is_dir():
            raise RunNotFoundError(f"run {run_id!r} not found")
        return self.root / run_id

    def list_ids(self) -> list[str]:
        runs = [p for p in self.root.iterdir() if p.is_dir() and RUN_ID.match(p.name)]
        return [p.name for p in sorted(runs, key=lambda p: p.stat().st_mtime)]

    def config(self, run_id: str) -> FitConfig:
        return FitConfig.model_validate(_read_json(self.path(run_id) / "config.json"))

    def data(self, run_id: str, split: str) -> list[Item]:
        folder = self.path(run_id)
        path = folder / f"{split}.jsonl"
        if not path.exists():
            return []

        def load_image(name: str) -> Image.Image:
            return image_from_png_bytes((folder / name).read_bytes())

        return [from_row(json.loads(line), load_image) for line in path.read_text("utf-8").splitlines()]

    def status(self, run_id: str) -> dict[str, Any]:
        return _read_json(self.path(run_id) / "status.json")

    def set_status(self, run_id: str, status: RunStatus, error: str | None = None) -> None:
        with self._lock:
            record = self.status(run_id)
            record.update(status=status, updated_at=time.time())
            if error is not None:
                record["error"] = error
            _write_json(self.path(run_id) / "status.json", record)

    def log(self, run_id: str, message: str) -> None:
        line = json.dumps({"time": time.time(), "message": message}) + "\n"
        with self._lock, open(self.path(run_id) / "logs.jsonl", "a", encoding="utf-8") as file:
            file.write(line)

    def logs(self, run_id: str, since: int = 0) -> list[dict[str, Any]]:
        """Log entries from index ``since`` on."""
        path = self.path(run_id) / "logs.jsonl"
        if not path.exists():
            return []
        with self._lock:
            lines = path.read_text("utf-8").splitlines()
        return [json.loads(line) for line in lines[since:] if line.strip()]

    def set_metrics(self, run_id: str, stage: str, metrics: dict[str, Any]) -> None:
        with self._lock:
            path = self.path(run_id) / "metrics.json"
            record = _read_json(path) if path.exists() else {}
            record[stage] = metrics
            _write_json(path, record)

    def metrics(self, run_id: str) -> dict[str, Any]:
        path = self.path(run_id) / "metrics.json"
        return _read_json(path) if path.exists() else {}

    def artifact_dir(self, run_id: str) -> Path:
        return self.path(run_id) / "model"


def _image_writer(folder: Path):
    counter = iter(range(1 << 62))

    def save(image: Image.Image) -> str:
        name = f"images/{next(counter):08d}.png"
        (folder / name).write_bytes(image_to_png_bytes(image))
        return name

    return save


def _write_json(path: Path, value: Any) -> None:
    _atomic_write(path, json.dumps(value, indent=2, default=str))


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    _atomic_write(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text("utf-8"))
