"""One run as it executes: which run, where it is read from and recorded, how it logs, when it stops, and its
ranks when several processes train it. The queue, the distributed launcher and each distributed worker make
one; ``runs.execute`` and ``runs.distributed.launch`` take it whole."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Protocol

from finetuner_core.config import FitConfig
from finetuner_core.runs.store import RunStore
from finetuner_core.training.distributed import Ranks
from finetuner_protocol.logs import LogRecord, as_record

logger = logging.getLogger("finetuner_core.runs.execute")
CHECKPOINT_FOLDER = "checkpoint"  # in the run's folder: the latest training checkpoint, resumed after a crash


class RunSource(Protocol):
    """What a rank that does not lead reads of a run (``runs.distributed.RunFolder``); a RunStore reads the same."""

    def path(self, run_id: str) -> Path: ...

    def config(self, run_id: str) -> FitConfig: ...

    def data(self, run_id: str, split: str) -> list: ...


def never() -> bool:
    return False


@dataclass(frozen=True)
class RunContext:
    """A run to execute. ``store`` records it (a :class:`RunStore`); a rank that does not lead only reads the
    run's folder and records nothing. ``log_to`` receives the run's log lines (default: the store's log of the
    run, and this process's logger; nothing on a rank that does not lead). The config and the data are read
    once, when first needed."""

    store: RunStore | RunSource
    run_id: str
    should_stop: Callable[[], bool] = never
    ranks: Ranks | None = None
    log_to: Callable[[str], None] | None = None

    @property
    def lead(self) -> bool:
        """Whether this process records the run: the only one, or the lead of several."""
        return self.ranks is None or self.ranks.lead

    @property
    def records(self) -> RunStore:
        """The store that records the run (the lead's)."""
        if not isinstance(self.store, RunStore):
            raise TypeError(f"run {self.run_id}: only the lead process records the run")
        return self.store

    @cached_property
    def config(self) -> FitConfig:
        return self.store.config(self.run_id)

    @cached_property
    def train_data(self) -> list:
        return self.store.data(self.run_id, "train")

    @cached_property
    def eval_data(self) -> list:
        """The evaluation data (none on a rank that does not lead: only the lead evaluates)."""
        return self.store.data(self.run_id, "eval") if self.lead else []

    @property
    def folder(self) -> Path:
        return self.store.path(self.run_id)

    @property
    def checkpoints(self) -> Path:
        return self.folder / CHECKPOINT_FOLDER

    @property
    def artifact_dir(self) -> Path:
        return self.records.artifact_dir(self.run_id)

    def log(self, entry: LogRecord | str) -> None:
        """Record ``entry`` in the run's log: a structured record (finetuner_protocol.logs) or a text line."""
        if self.log_to is not None:
            self.log_to(as_record(entry).text())
        elif self.lead:
            logger.info("run %s: %s", self.run_id, as_record(entry).text())
            self.records.log(self.run_id, entry)
