"""Runs: their on-disk store, their execution, and the queue that executes them in the background."""

from finetuner_core.runs.queue import RunQueue
from finetuner_core.runs.store import RunNotFoundError, RunStatus, RunStore, runs_root

__all__ = ["RunNotFoundError", "RunQueue", "RunStatus", "RunStore", "runs_root"]
