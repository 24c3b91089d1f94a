"""One trainer per workspace: an exclusive lock on ``<workspace>/trainer.lock``, held while the trainer lives.

Two Flows training from one workspace would run the same queued runs twice and write the same run folders. The
lock is ``flock``: the kernel releases it when its holder exits, however it exits (kill -9 included), so a
restarted trainer never finds a stale lock. The file holds the holder's pid, for the message of the next one.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

LOCK_FILE = "trainer.lock"


class WorkspaceLockedError(RuntimeError):
    """Another process holds the workspace."""


class WorkspaceLock:
    """The held lock of ``root``; ``release()`` (or the process's exit) frees it."""

    def __init__(self, root: str | Path):
        self.path = Path(root) / LOCK_FILE
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "a+", encoding="utf-8")  # noqa: SIM115 (held until release)
        try:
            fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._file.seek(0)
            holder = self._file.read().strip() or "unknown"
            self._file.close()
            raise WorkspaceLockedError(
                f"workspace {Path(root).resolve()} is in use by another trainer (pid {holder}): stop that Flow, "
                "or give this one a workspace of its own"
            ) from None
        self._file.truncate(0)
        self._file.write(f"{os.getpid()}\n")
        self._file.flush()

    def release(self) -> None:
        if not self._file.closed:
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()


def holder_pid(root: str | Path) -> int | None:
    """The pid written by the trainer holding (or last holding) ``root``'s lock."""
    try:
        return int((Path(root) / LOCK_FILE).read_text("utf-8").strip())
    except (FileNotFoundError, ValueError):
        return None
