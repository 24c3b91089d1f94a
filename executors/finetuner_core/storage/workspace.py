"""The trainer's workspace: one folder holding users, datasets and runs, shared by the Flow's executors.

    <workspace>/users.db     users and their token digests (storage.users)
    <workspace>/datasets/    uploaded datasets (storage.datasets)
    <workspace>/runs/        runs (runs.store)

The folder is an executor's ``workspace_dir`` setting, else ``$FINETUNER_WORKSPACE``, else ``./workspace``.
"""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path

from finetuner_core.runs.store import RunStore
from finetuner_core.storage.datasets import DatasetStore
from finetuner_core.storage.users import UserStore

WORKSPACE_VARIABLE = "FINETUNER_WORKSPACE"


def workspace_root(setting: str = "", default: str = "workspace") -> Path:
    return Path(setting or os.environ.get(WORKSPACE_VARIABLE) or default)


class Workspace:
    def __init__(self, root: str | Path, max_dataset_bytes: int = 10 * 1024**3):
        self.root = Path(root)
        self.max_dataset_bytes = max_dataset_bytes

    @cached_property
    def users(self) -> UserStore:
        return UserStore(self.root / "users.db")

    @cached_property
    def runs(self) -> RunStore:
        return RunStore(self.root / "runs")

    @cached_property
    def datasets(self) -> DatasetStore:
        return DatasetStore(self.root / "datasets", self.max_dataset_bytes)
