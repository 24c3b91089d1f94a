"""Callbacks: everything around the loop that is not the optimisation step itself."""

from __future__ import annotations

from collections.abc import Callable

from finetuner_core.training.state import TrainState


class Callback:
    """Hooks the loop calls; each does nothing unless overridden."""

    def on_train_begin(self, state: TrainState) -> None: ...

    def on_step_end(self, state: TrainState) -> None: ...

    def on_epoch_end(self, state: TrainState) -> None: ...

    def on_train_end(self, state: TrainState) -> None: ...


class LoggingCallback(Callback):
    """Reports step, epoch, loss, learning rate and ETA every ``every`` steps through ``log``."""

    def __init__(self, log: Callable[[str], None], every: int = 10):
        self.log = log
        self.every = every

    def on_train_begin(self, state: TrainState) -> None:
        self.log(f"training: {state.epochs} epoch(s), {state.total_steps} steps")

    def on_step_end(self, state: TrainState) -> None:
        if state.step % self.every == 0 or state.step == state.total_steps:
            self.log(
                f"step {state.step}/{state.total_steps} epoch {state.epoch + 1}/{state.epochs} "
                f"loss {state.loss:.4f} lr {state.learning_rate:.2e} "
                f"elapsed {state.elapsed_s:.0f}s eta {state.eta_s:.0f}s"
            )

    def on_train_end(self, state: TrainState) -> None:
        self.log(f"training done: {state.step} steps in {state.elapsed_s:.1f}s")


class StopCallback(Callback):
    """Stops training after the step in which ``should_stop()`` turned true (e.g. a cancelled run)."""

    def __init__(self, should_stop: Callable[[], bool]):
        self.should_stop = should_stop

    def on_step_end(self, state: TrainState) -> None:
        if self.should_stop():
            state.stop = True
