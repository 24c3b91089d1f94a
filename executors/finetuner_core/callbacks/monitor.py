"""The monitored value (the loss or an evaluation metric) and whether a new one is better."""

from __future__ import annotations

import math
from typing import Any, Literal

from finetuner_core.callbacks.state import TrainState


class Monitor:
    """Reads the monitored value once per new observation: the loss every step, a metric per evaluation."""

    def __init__(self, monitor: str = "loss", mode: Literal["min", "max"] = "min", min_delta: float = 0.0):
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        self.monitor, self.mode, self.min_delta = monitor, mode, min_delta
        self.seen: int | None = None

    def fresh(self, state: TrainState) -> float | None:
        """The value if it is new since the last call, else None."""
        step = (state.step or None) if self.monitor == "loss" else state.metrics_step
        if step is None or step == self.seen or (self.monitor != "loss" and self.monitor not in state.metrics):
            return None
        self.seen = step
        return state.loss if self.monitor == "loss" else float(state.metrics[self.monitor])

    def better(self, value: float, best: float | None) -> bool:
        if best is None:
            return math.isfinite(value)
        return value < best - self.min_delta if self.mode == "min" else value > best + self.min_delta

    def state_dict(self) -> dict[str, Any]:
        return {"seen": self.seen}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.seen = state["seen"]
