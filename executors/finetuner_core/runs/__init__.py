"""Runs: their store (runs.db and each run's folder), their execution, and the queue that executes them.

Only the store is imported here: ``runs.queue`` and ``runs.execute`` load the training code, so they are imported
where they are used.
"""

from finetuner_core.runs.store import RunNotFoundError, RunStatus, RunStore, runs_root

__all__ = ["RunNotFoundError", "RunStatus", "RunStore", "runs_root"]
