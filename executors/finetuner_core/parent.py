"""An executor ends with the Flow that started it.

jina's executors are processes of the Flow's main process. When that process dies without closing them (kill -9,
or its supervisor died: see finetuner_core.serve), they would serve on as orphans, the trainer still training,
beside the next Flow. ``stop_with_parent`` watches the parent: once it is gone, the executor gets SIGTERM, the
normal shutdown (the trainer checkpoints its runs and leaves them for the next trainer).
"""

from __future__ import annotations

import os
import signal
import threading
import time


def stop_with_parent(interval_s: float = 1.0) -> None:
    """SIGTERM to this process once its parent has exited (checked every ``interval_s``)."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(interval_s)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, daemon=True, name="parent-watch").start()
