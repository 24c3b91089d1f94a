"""What the training loop shares with its callbacks."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

CANCELLED = "cancelled"


@dataclass
class TrainState:
    """Progress of one training: callbacks read it, and may set ``stop`` to end training after this step.

    A step is one optimizer update (``gradient_accumulation_steps`` batches); ``epoch_step`` counts the steps
    done in the current epoch (where a resumed training goes on from). ``metrics`` holds the latest evaluation,
    made at step ``metrics_step``. ``skipped_steps`` counts updates dropped because their fp16 gradients
    overflowed (the loss scale then drops). ``batch_size`` and ``precision`` are the ones training runs with
    (``batch_size=None`` and ``precision="auto"`` are resolved before training). A callback that stops training
    says why in ``stop_reason``; ``failed`` marks a stop the run must fail with (e.g. a non-finite loss).
    ``notes`` say how the data was sampled and how settings were resolved, for the logs.
    """

    epoch: int = 0
    epochs: int = 1
    step: int = 0
    epoch_step: int = 0
    total_steps: int = 0
    loss: float = math.nan
    learning_rate: float = 0.0
    grad_norm: float = math.nan
    elapsed_s: float = 0.0
    skipped_steps: int = 0
    batch_size: int | None = None
    precision: str = "fp32"
    metrics: dict[str, float] = field(default_factory=dict)
    metrics_step: int | None = None
    stop: bool = False
    stop_reason: str | None = None
    failed: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def eta_s(self) -> float:
        if self.step == 0:
            return math.nan
        return self.elapsed_s / self.step * (self.total_steps - self.step)

    @property
    def cancelled(self) -> bool:
        return self.stop_reason == CANCELLED

    def request_stop(self, reason: str, failed: bool = False) -> None:
        """End training after this step, for ``reason`` (the first reason given is kept)."""
        if not self.stop:
            self.stop, self.stop_reason = True, reason
        self.failed = self.failed or failed
