"""The run's log about training: the notes and settings at begin, progress steps, a summary at end, each as a
structured record (finetuner_protocol.logs).

How often a step is logged (``every``, the fit's ``log_every``):

- ``every=N``: every N-th step and the last one;
- ``every=None`` (the default): each of the first :data:`EVERY_STEP_UNTIL` steps (a short run shows every step,
  and a long one moves its progress bar at once), then one step whenever :data:`INTERVAL_S` seconds of training
  have passed since the last one logged (a steady rate, however fast the steps are), and the last step.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from finetuner_core.callbacks.base import Callback
from finetuner_core.callbacks.state import TrainState
from finetuner_protocol.logs import LogRecord, Note, Step, TrainBegin, TrainEnd

EVERY_STEP_UNTIL = 50
INTERVAL_S = 2.0


class LoggingCallback(Callback):
    """Reports the notes and the settings at train begin, then step, epoch, loss, learning rate, elapsed time and
    ETA at the steps the schedule picks (see the module), and the summary at train end.

    ``emit`` receives each record (a run's log stores its fields and its text); without it, ``log`` receives the
    record's text line.
    """

    def __init__(
        self,
        log: Callable[[str], None] | None = None,
        every: int | None = None,
        emit: Callable[[LogRecord], None] | None = None,
    ):
        if every is not None and every < 1:
            raise ValueError(f"every must be >= 1, got {every}")
        if emit is None and log is None:
            raise ValueError("LoggingCallback needs log or emit")
        self.emit: Callable[[LogRecord], None] = emit or (lambda record: log(record.text()))
        self.every = every
        self._logged_at_s = -math.inf

    def on_train_begin(self, state: TrainState) -> None:
        for note in state.notes:
            self.emit(Note(note=note))
        self.emit(
            TrainBegin(
                epochs=state.epochs,
                total_steps=state.total_steps,
                batch_size=state.batch_size,
                precision=state.precision,
            )
        )

    def on_step_end(self, state: TrainState) -> None:
        if not self.due(state):
            return
        self._logged_at_s = state.elapsed_s
        self.emit(
            Step(
                step=state.step,
                total_steps=state.total_steps,
                epoch=state.epoch + 1,
                epochs=state.epochs,
                loss=state.loss,
                learning_rate=state.learning_rate,
                elapsed_s=state.elapsed_s,
                eta_s=state.eta_s,
            )
        )

    def due(self, state: TrainState) -> bool:
        """Whether the step just done is logged."""
        if state.step == state.total_steps:
            return True
        if self.every is not None:
            return state.step % self.every == 0
        return state.step <= EVERY_STEP_UNTIL or state.elapsed_s - self._logged_at_s >= INTERVAL_S

    def on_train_end(self, state: TrainState) -> None:
        self.emit(TrainEnd(steps=state.step, elapsed_s=state.elapsed_s))
