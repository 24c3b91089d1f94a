"""A small SQLite database file, safe to use from several threads and processes.

Each call opens its own connection (SQLite connections are not shared between threads), in WAL mode so that
readers do not wait for a writer, with a busy timeout so that concurrent writers queue instead of failing.
Writes made inside ``transaction()`` are committed together or not at all.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

BUSY_TIMEOUT_S = 30.0


class Database:
    def __init__(self, path: str | Path, schema: str):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S)
        try:
            connection.execute("PRAGMA journal_mode=WAL")
            connection.executescript(schema)
        finally:
            connection.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A connection whose statements commit together when the block ends (roll back on an exception)."""
        connection = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        connection.row_factory = sqlite3.Row
        try:
            connection.execute("BEGIN IMMEDIATE")
            try:
                yield connection
            except BaseException:
                connection.execute("ROLLBACK")
                raise
            connection.execute("COMMIT")
        finally:
            connection.close()

    def rows(self, query: str, arguments: tuple = ()) -> list[dict[str, Any]]:
        connection = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S)
        connection.row_factory = sqlite3.Row
        try:
            return [dict(row) for row in connection.execute(query, arguments)]
        finally:
            connection.close()

    def row(self, query: str, arguments: tuple = ()) -> dict[str, Any] | None:
        found = self.rows(query, arguments)
        return found[0] if found else None
