"""Callbacks: everything around the loop that is not the optimisation step itself.

A callback whose progress matters for resuming training (counters, the best value and weights) returns it from
``state_dict`` as plain tensors, numbers, strings, lists and dicts, and takes it back in ``load_state_dict``;
the training checkpoint (``training.checkpoint``) stores it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from finetuner_core.training.state import CANCELLED, TrainState


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


class LoggingCallback(Callback):
    """Reports the notes and the settings at train begin, then step, epoch, loss, learning rate and ETA every
    ``every`` steps through ``log``."""

    def __init__(self, log: Callable[[str], None], every: int = 10):
        self.log = log
        self.every = every

    def on_train_begin(self, state: TrainState) -> None:
        for note in state.notes:
            self.log(f"note: {note}")
        batch = f", batch size {state.batch_size}" if state.batch_size else ""
        self.log(f"training: {state.epochs} epoch(s), {state.total_steps} steps{batch}, {state.precision}")

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
            state.request_stop(CANCELLED)


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


class BestModelCheckpoint(Callback):
    """Keeps the weights with the best monitored value (in memory, or in ``directory``) and restores them at
    train end. With ``include_initial`` (the default) the model as it was at train begin competes too, when
    its value is known then (a metric given to :class:`EvaluationCallback` as ``initial``), so training never
    hands back a model worse than the pretrained one on that metric.
    """

    def __init__(
        self,
        model: nn.Module,
        monitor: str,
        mode: Literal["min", "max"] = "max",
        directory: str | Path | None = None,
        include_initial: bool = True,
        log: Callable[[str], None] = lambda message: None,
    ):
        self.model, self.log = model, log
        self.watch = Monitor(monitor, mode)
        self.path = Path(directory) / "best.pt" if directory is not None else None
        self.include_initial = include_initial
        self.best: float | None = None
        self.best_step: int | None = None
        self.best_metrics: dict[str, float] = {}
        self._weights: dict[str, torch.Tensor] | None = None

    def on_train_begin(self, state: TrainState) -> None:
        if self.include_initial:
            self._check(state)
        else:
            self.watch.seen = state.metrics_step

    def on_step_end(self, state: TrainState) -> None:
        self._check(state)

    def on_epoch_end(self, state: TrainState) -> None:
        self._check(state)

    def on_train_end(self, state: TrainState) -> None:
        self._check(state)
        if self.best_step is None or self.best_step == state.step:
            return
        weights = torch.load(self.path, weights_only=True) if self.path else self._weights
        self.model.load_state_dict(weights)
        last = state.metrics.get(self.watch.monitor)
        when = "before training (the pretrained model)" if self.best_step == 0 else f"at step {self.best_step}"
        self.log(
            f"keeping the best model, {self.watch.monitor} {self.best:.4f} {when}; at step {state.step}: "
            + (f"{last:.4f}" if isinstance(last, int | float) else "not measured")
        )
        state.metrics, state.metrics_step = dict(self.best_metrics), self.best_step

    def state_dict(self) -> dict[str, Any]:
        """The best value, its step and metrics, and its weights (read back from ``directory`` when kept there)."""
        weights = None
        if self.best_step is not None:
            weights = torch.load(self.path, weights_only=True) if self.path else self._weights
        return {
            "best": self.best,
            "best_step": self.best_step,
            "best_metrics": dict(self.best_metrics),
            "watch": self.watch.state_dict(),
            "weights": weights,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.best_step = state["best"], state["best_step"]
        self.best_metrics = dict(state["best_metrics"])
        self.watch.load_state_dict(state["watch"])
        self._keep(state["weights"])

    def _check(self, state: TrainState) -> None:
        value = self.watch.fresh(state)
        if value is None or not self.watch.better(value, self.best):
            return
        self.best, self.best_step, self.best_metrics = value, state.step, dict(state.metrics)
        self._keep({k: v.detach().to("cpu", copy=True) for k, v in self.model.state_dict().items()})

    def _keep(self, weights: dict[str, torch.Tensor] | None) -> None:
        if self.path and weights is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            torch.save(weights, self.path)
        else:
            self._weights = weights
