"""Early stopping: when the monitored value stops improving, or at once when the loss is not finite."""

from __future__ import annotations

import math
from typing import Any, Literal

from finetuner_core.callbacks.base import Callback
from finetuner_core.callbacks.monitor import Monitor
from finetuner_core.callbacks.state import TrainState


class EarlyStopping(Callback):
    """Stops when the monitored value has not improved for ``patience`` checks (None: never for that reason).

    Whatever it monitors, a non-finite loss stops training at once as a failure, with the reason in the state.
    """

    def __init__(
        self,
        monitor: str = "loss",
        patience: int | None = 3,
        mode: Literal["min", "max"] = "min",
        min_delta: float = 0.0,
    ):
        self.watch = Monitor(monitor, mode, min_delta)
        self.patience = patience
        self.best: float | None = None
        self.waited = 0

    def on_train_begin(self, state: TrainState) -> None:
        self._check(state)

    def on_step_end(self, state: TrainState) -> None:
        if state.step > 0 and not math.isfinite(state.loss):
            state.request_stop(f"training loss is {state.loss} at step {state.step}", failed=True)
            return
        self._check(state)

    def on_epoch_end(self, state: TrainState) -> None:
        self._check(state)

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "waited": self.waited, "watch": self.watch.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.waited = state["best"], state["waited"]
        self.watch.load_state_dict(state["watch"])

    def _check(self, state: TrainState) -> None:
        value = self.watch.fresh(state)
        if value is None or self.patience is None:
            return
        if self.watch.better(value, self.best):
            self.best, self.waited = value, 0
            return
        self.waited += 1
        if self.waited >= self.patience:
            state.request_stop(
                f"early stopping: {self.watch.monitor} did not improve on {self.best:.4g} "
                f"for {self.patience} check(s), at step {state.step}"
            )
