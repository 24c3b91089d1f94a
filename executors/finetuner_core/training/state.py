"""What the training loop shares with its callbacks."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass
class TrainState:
    """Progress of one training: callbacks read it, and may set ``stop`` to end training after this step."""

    epoch: int = 0
    epochs: int = 1
    step: int = 0
    total_steps: int = 0
    loss: float = math.nan
    learning_rate: float = 0.0
    elapsed_s: float = 0.0
    stop: bool = False

    @property
    def eta_s(self) -> float:
        if self.step == 0:
            return math.nan
        return self.elapsed_s / self.step * (self.total_steps - self.step)
