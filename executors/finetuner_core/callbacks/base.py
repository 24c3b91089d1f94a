"""The callback base class: the hooks the training loop calls.

A callback whose progress matters for resuming training (counters, the best value and weights) returns it from
``state_dict`` as plain tensors, numbers, strings, lists and dicts, and takes it back in ``load_state_dict``;
the training checkpoint (``training.checkpoint``) stores it.
"""

from __future__ import annotations

from typing import Any

from finetuner_core.callbacks.state import TrainState


class Callback:
    """Hooks the loop calls; each does nothing unless overridden."""

    def on_train_begin(self, state: TrainState) -> None: ...

    def on_step_end(self, state: TrainState) -> None: ...

    def on_epoch_end(self, state: TrainState) -> None: ...

    def on_train_end(self, state: TrainState) -> None: ...

    def state_dict(self) -> dict[str, Any]:
        """What resuming needs of this callback (nothing, unless overridden)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None: ...
