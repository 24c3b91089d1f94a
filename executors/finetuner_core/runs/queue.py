"""Executes runs in background threads, so that no request stays open for the length of a run."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable

from finetuner_core.runs.execute import execute_run
from finetuner_core.runs.store import RunStatus, RunStore


class RunQueue:
    """A FIFO of run ids served by ``concurrency`` worker threads.

    On start, runs a previous process left QUEUED are queued again, and so are runs it left STARTED (it died
    mid-run, e.g. killed): they go on from their last training checkpoint. ``close(suspend=True)`` (the
    trainer is stopping, e.g. on SIGTERM) stops the runs in progress at their next step, after a checkpoint,
    and leaves them QUEUED, to be resumed by the next trainer on this workspace.
    """

    def __init__(self, store: RunStore, concurrency: int = 1, execute: Callable[..., None] = execute_run):
        self.store = store
        self.execute = execute
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._cancelled: set[str] = set()
        self._suspending = False
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

    def close(self, timeout: float | None = None, suspend: bool = False) -> None:
        """Stop the workers after the runs they are executing (``suspend``: at their next step); queued runs
        stay QUEUED in the store."""
        self._suspending = self._suspending or suspend
        for _ in self._workers:
            self._queue.put(None)
        for worker in self._workers:
            worker.join(timeout)

    def _work(self) -> None:
        while (run_id := self._queue.get()) is not None:
            if self._suspending:
                continue
            if run_id in self._cancelled:
                self.store.set_status(run_id, RunStatus.CANCELLED)
                continue
            self.execute(self.store, run_id, lambda rid=run_id: rid in self._cancelled or self._suspending)
            if self._suspending and run_id not in self._cancelled:
                self.store.log(run_id, "suspended: the trainer is stopping; the run resumes when it restarts")
                self.store.set_status(run_id, RunStatus.QUEUED)

    def _recover(self) -> None:
        self.store.sweep()
        for run in self.store.list(limit=None):
            if run["status"] == RunStatus.STARTED:
                self.store.log(run["run_id"], "the trainer restarted: resuming from the last checkpoint")
                self.store.set_status(run["run_id"], RunStatus.QUEUED)
            if run["status"] in (RunStatus.QUEUED, RunStatus.STARTED):
                self._queue.put(run["run_id"])
