"""The trainer's workspace: one folder holding users, datasets and runs, shared by the Flow's executors.

It sits above the stores it opens: storage (users, datasets, models) and runs (runs.store).

    <workspace>/users.db     users and their token digests (storage.users)
    <workspace>/datasets/    uploaded datasets (storage.datasets)
    <workspace>/runs/        runs (runs.store)
    <workspace>/models/      models an operator pulled or imported (storage.models)

The folder is an executor's ``workspace_dir`` setting, else ``$FINETUNER_WORKSPACE``, else ``./workspace``.

Runs, experiments and datasets belong to a user id (storage.users), never to a user name, which a later user may
take again. A workspace written when they belonged to names is converted once, when it is opened: each name of
an existing user becomes that user's id; what belonged to a name no user has any more stays with that name, which
no user is (orphaned: only an admin sees it).
"""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path

from finetuner_core.runs.store import RunStore
from finetuner_core.storage.database import Database
from finetuner_core.storage.datasets import DatasetStore
from finetuner_core.storage.models import MODELS_FOLDER, ModelStore
from finetuner_core.storage.users import UserStore

WORKSPACE_VARIABLE = "FINETUNER_WORKSPACE"
OWNED_BY_ID = 1  # the version (PRAGMA user_version) of a database whose owners are user ids


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
        store = RunStore(self.root / "runs")
        owners_to_ids(store.db, ("runs", "experiments"), self.users)
        return store

    @cached_property
    def datasets(self) -> DatasetStore:
        store = DatasetStore(self.root / "datasets", self.max_dataset_bytes)
        owners_to_ids(store.db, ("datasets",), self.users)
        return store

    @cached_property
    def models(self) -> ModelStore:
        return ModelStore(self.root / MODELS_FOLDER)


def owners_to_ids(db: Database, tables: tuple[str, ...], users: UserStore) -> None:
    """Once per database: the ``owner`` column of ``tables`` from user names to user ids."""
    with db.transaction() as connection:
        if connection.execute("PRAGMA user_version").fetchone()[0] >= OWNED_BY_ID:
            return
        for name, user_id in users.ids_by_name().items():
            for table in tables:
                connection.execute(f"UPDATE {table} SET owner = ? WHERE owner = ?", (user_id, name))
        connection.execute(f"PRAGMA user_version = {OWNED_BY_ID}")
