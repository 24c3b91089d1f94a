"""Stopping training from outside (a cancelled run)."""

from __future__ import annotations

from collections.abc import Callable

from finetuner_core.callbacks.base import Callback
from finetuner_core.callbacks.state import CANCELLED, TrainState


class StopCallback(Callback):
    """Stops training after the step in which ``should_stop()`` turned true (e.g. a cancelled run)."""

    def __init__(self, should_stop: Callable[[], bool]):
        self.should_stop = should_stop

    def on_step_end(self, state: TrainState) -> None:
        if self.should_stop():
            state.request_stop(CANCELLED)
