"""Executes runs in background threads, so that no request stays open for the length of a run."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable

from finetuner_core.runs.execute import execute_run
from finetuner_core.runs.store import RunStatus, RunStore


class RunQueue:
    """A FIFO of run ids served by ``concurrency`` worker threads.

    On start, runs a previous process left QUEUED are queued again; runs it left STARTED are marked FAILED
    (their process died mid-run).
    """

    def __init__(self, store: RunStore, concurrency: int = 1, execute: Callable[..., None] = execute_run):
        self.store = store
        self.execute = execute
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._cancelled: set[str] = set()
        self._workers = [
            threading.Thread(target=self._work, daemon=True, name=f"run-worker-{i}") for i in range(concurrency)
        ]
        self._recover()
        for worker in self._workers:
            worker.start()

    def submit(self, run_id: str) -> None:
        self.store.set_status(run_id, RunStatus.QUEUED)
        self._queue.put(run_id)

    def cancel(self, run_id: str) -> None:
        """Ask a queued or started run to stop; it ends CANCELLED."""
        self._cancelled.add(run_id)

    def close(self, timeout: float | None = None) -> None:
        """Stop the workers after the runs they are executing; queued runs stay QUEUED on disk."""
        for _ in self._workers:
            self._queue.put(None)
        for worker in self._workers:
            worker.join(timeout)

    def _work(self) -> None:
        while (run_id := self._queue.get()) is not None:
            if run_id in self._cancelled:
                self.store.set_status(run_id, RunStatus.CANCELLED)
                continue
            self.execute(self.store, run_id, lambda rid=run_id: rid in self._cancelled)

    def _recover(self) -> None:
        for run_id in self.store.list_ids():
            status = self.store.status(run_id)["status"]
            if status == RunStatus.QUEUED:
                self._queue.put(run_id)
            elif status == RunStatus.STARTED:
                self.store.set_status(
                    run_id, RunStatus.FAILED, error="the trainer stopped while the run was in progress"
                )
