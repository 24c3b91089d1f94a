"""Evaluation during training: every N steps, per epoch and/or at the end."""

from __future__ import annotations

from collections.abc import Callable

from finetuner_core.callbacks.base import Callback
from finetuner_core.callbacks.state import TrainState


class EvaluationCallback(Callback):
    """Calls ``evaluate()`` every ``every_steps`` steps, after every epoch (``per_epoch``) and/or when training ends
    (``at_end``, unless the last step was just evaluated); its metrics go to the state.

    ``initial`` (the metrics of the model before training, when known) is put in the state at train begin, so
    that monitors can compare with the pretrained model. ``on_metrics(step, metrics)`` receives each
    evaluation. Put this callback before the ones that monitor a metric.
    """

    def __init__(
        self,
        evaluate: Callable[[], dict[str, float]],
        every_steps: int | None = None,
        per_epoch: bool = False,
        initial: dict[str, float] | None = None,
        on_metrics: Callable[[int, dict[str, float]], None] = lambda step, metrics: None,
        at_end: bool = False,
    ):
        if every_steps is None and not per_epoch and not at_end:
            raise ValueError("EvaluationCallback needs every_steps, per_epoch or at_end")
        self.evaluate, self.every_steps, self.per_epoch, self.at_end = evaluate, every_steps, per_epoch, at_end
        self.initial, self.on_metrics = initial, on_metrics

    def on_train_begin(self, state: TrainState) -> None:
        if self.initial is not None:
            state.metrics, state.metrics_step = dict(self.initial), 0

    def on_step_end(self, state: TrainState) -> None:
        if self.every_steps and state.step % self.every_steps == 0 and not state.failed:
            self._run(state)

    def on_epoch_end(self, state: TrainState) -> None:
        if self.per_epoch and state.metrics_step != state.step and not state.failed:
            self._run(state)

    def on_train_end(self, state: TrainState) -> None:
        if self.at_end and state.metrics_step != state.step and not state.failed:
            self._run(state)

    def _run(self, state: TrainState) -> None:
        state.metrics, state.metrics_step = dict(self.evaluate()), state.step
        self.on_metrics(state.step, state.metrics)
