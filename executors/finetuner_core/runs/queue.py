"""Executes runs in background threads, so that no request stays open for the length of a run."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable

from finetuner_core.runs.context import RunContext
from finetuner_core.runs.execute import execute_run, remove_checkpoint
from finetuner_core.runs.store import RunStore
from finetuner_protocol.runs import RunStatus


class RunQueue:
    """A FIFO of run ids served by ``concurrency`` worker threads.

    On start, runs a previous process left QUEUED are queued again, and so are runs it left STARTED (it died
    mid-run, e.g. killed): they go on from their last training checkpoint. ``close(suspend=True)`` (the
    trainer is stopping, e.g. on SIGTERM) stops the runs in progress at their next step, after a checkpoint,
    and leaves them QUEUED, to be resumed by the next trainer on this workspace.

    A cancel is stored at once: a queued run ends CANCELLED before it starts, a started one is marked and stops
    at its next step; neither is resumed by a later trainer. A run that has ended keeps no training checkpoint
    (unless its config says ``keep_checkpoint``); a suspended one keeps it, to go on from it.
    """

    def __init__(self, store: RunStore, concurrency: int = 1, execute: Callable[[RunContext], None] = execute_run):
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
        if self.store.set_status_if(run_id, RunStatus.QUEUED, (RunStatus.CREATED,)):
            self._queue.put(run_id)

    def cancel(self, run_id: str) -> None:
        """Stop a queued or started run; it ends CANCELLED (a queued one at once)."""
        self._cancelled.add(run_id)
        self.store.request_cancel(run_id)
        if self.store.status(run_id)["status"] == RunStatus.CANCELLED:
            remove_checkpoint(self.store, run_id)  # e.g. of a run suspended, then cancelled before it resumed

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
            if self._suspending or not self.store.set_status_if(run_id, RunStatus.STARTED, (RunStatus.QUEUED,)):
                continue  # the trainer is stopping (the run stays QUEUED), or the run was cancelled
            self.execute(RunContext(self.store, run_id, should_stop=self._stopper(run_id)))
            if self._suspending and run_id not in self._cancelled and self._requeue(run_id):
                self.store.log(run_id, "suspended: the trainer is stopping; the run resumes when it restarts")
            elif self.store.status(run_id)["status"] == RunStatus.CANCELLED:
                remove_checkpoint(self.store, run_id)

    def _stopper(self, run_id: str) -> Callable[[], bool]:
        """Whether the run is to stop: it was cancelled, or the trainer is stopping."""
        return lambda: run_id in self._cancelled or self._suspending

    def _requeue(self, run_id: str) -> bool:
        """A run stopped by the trainer's stopping goes back to the queue (one that ended anyway stays ended)."""
        return self.store.set_status_if(run_id, RunStatus.QUEUED, (RunStatus.STARTED, RunStatus.CANCELLED))

    def _recover(self) -> None:
        self.store.sweep()
        for run in self.store.list(limit=None):
            run_id, status = run["run_id"], run["status"]
            if status not in (RunStatus.QUEUED, RunStatus.STARTED):
                continue
            if self.store.cancel_requested(run_id):
                self.store.log(run_id, "cancelled")
                self.store.set_status(run_id, RunStatus.CANCELLED)
                remove_checkpoint(self.store, run_id)
                continue
            if status == RunStatus.STARTED:
                self.store.log(run_id, "the trainer restarted: resuming from the last checkpoint")
                self.store.set_status(run_id, RunStatus.QUEUED)
            self._queue.put(run_id)
