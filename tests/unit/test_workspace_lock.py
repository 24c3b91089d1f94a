"""One trainer per workspace: a second holder is refused with one line naming the workspace and the holder's pid;
the lock is free again once its holder releases it or dies (kill -9 included)."""

import os
import signal
import subprocess
import sys
import time

import pytest

from finetuner_core.storage.lock import WorkspaceLock, WorkspaceLockedError, holder_pid

HOLD = "import sys, time\nfrom finetuner_core.storage.lock import WorkspaceLock\nlock = WorkspaceLock(sys.argv[1])\n"
HOLD += "print('held', flush=True)\ntime.sleep(600)\n"


def test_a_second_trainer_on_a_held_workspace_is_refused_until_the_holder_dies(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        assert holder_pid(tmp_path) == holder.pid
        with pytest.raises(WorkspaceLockedError) as refused:
            WorkspaceLock(tmp_path)
        message = str(refused.value)
        assert "\n" not in message
        assert str(tmp_path.resolve()) in message and f"pid {holder.pid}" in message
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(30)
        holder.stdout.close()
    deadline = time.monotonic() + 30
    while True:  # the kernel frees the lock with its holder's last file descriptor
        try:
            lock = WorkspaceLock(tmp_path)
            break
        except WorkspaceLockedError:
            assert time.monotonic() < deadline, "the lock of a killed holder was never freed"
            time.sleep(0.1)
    assert holder_pid(tmp_path) == os.getpid()
    lock.release()


def test_a_released_lock_can_be_taken_again_and_a_new_workspace_is_created(tmp_path):
    root = tmp_path / "new" / "workspace"
    first = WorkspaceLock(root)
    with pytest.raises(WorkspaceLockedError, match="in use by another trainer"):
        WorkspaceLock(root)  # a second open file: refused within one process too
    first.release()
    first.release()  # twice is harmless
    WorkspaceLock(root).release()
