"""The best model: the weights with the best monitored value, restored when training ends."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from finetuner_core.callbacks.base import Callback
from finetuner_core.callbacks.monitor import Monitor
from finetuner_core.callbacks.state import TrainState
from finetuner_protocol.logs import BestModel, LogRecord


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
        log: Callable[[LogRecord], None] = lambda record: None,
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
        self.log(
            BestModel(
                monitor=self.watch.monitor,
                value=self.best,
                step=self.best_step,
                last_step=state.step,
                last_value=last if isinstance(last, int | float) else None,
            )
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
