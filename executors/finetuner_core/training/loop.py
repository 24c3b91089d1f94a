"""The training loop: batches from the task, their loss, a step. Everything else is a callback.

One step is one optimizer update over ``gradient_accumulation_steps`` batches (fewer for the last step of an
epoch when the batches run out): each batch's loss is divided by the number of batches in the step, so that
for a loss that is a mean over items, the accumulated gradient is that of one batch holding them all. A step
whose loss is not finite is not applied (its gradients are dropped); callbacks see the loss and may stop.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable

import torch

from finetuner_core.config import FitConfig
from finetuner_core.training.callbacks import Callback
from finetuner_core.training.optimizers import build_optimizer
from finetuner_core.training.schedulers import build_scheduler
from finetuner_core.training.state import TrainState
from finetuner_core.training.tasks import make_task


def train(model, records: list, config: FitConfig, callbacks: Iterable[Callback] = ()) -> TrainState:
    """Fine-tune ``model`` (an :class:`EmbeddingModel`) in place on labeled items or text-image pairs."""
    callbacks = list(callbacks)
    torch.manual_seed(config.seed)
    task = make_task(records, config, model)
    sampler = task.sampler
    per_epoch = math.ceil(len(sampler) / config.gradient_accumulation_steps)
    total = per_epoch * config.epochs
    total = min(total, config.max_steps) if config.max_steps else total
    optimizer = build_optimizer(model, config)
    by_epoch = config.scheduler_interval == "epoch"
    units = math.ceil(total / per_epoch) if by_epoch else total
    scheduler = build_scheduler(optimizer, config.scheduler, units, config.warmup_ratio, config.scheduler_options)
    params = [p for group in optimizer.param_groups for p in group["params"]]
    state = TrainState(epochs=config.epochs, total_steps=total, learning_rate=_lr(scheduler), notes=task.notes)
    _each(callbacks, "on_train_begin", state)
    model.train()
    start = time.perf_counter()
    for epoch in range(config.epochs):
        state.epoch = epoch
        sampler.set_epoch(epoch)
        for batches in _groups(list(sampler), config.gradient_accumulation_steps):
            optimizers = [optimizer, *task.optimizers]
            for each in optimizers:
                each.zero_grad(set_to_none=True)
            state.loss = accumulate(task, model, batches)
            if math.isfinite(state.loss):
                state.grad_norm = clip(params, config.max_grad_norm)
                for each in optimizers:
                    each.step()
            if not by_epoch:
                scheduler.step()
            state.step += 1
            state.learning_rate = _lr(scheduler)
            state.elapsed_s = time.perf_counter() - start
            _each(callbacks, "on_step_end", state)
            if state.stop or state.step >= total:
                break
        if by_epoch:
            scheduler.step()
            state.learning_rate = _lr(scheduler)
        _each(callbacks, "on_epoch_end", state)
        if state.stop or state.step >= total:
            break
    model.eval()
    _each(callbacks, "on_train_end", state)
    return state


def accumulate(task, model, batches: list[list[int]]) -> float:
    """Back-propagate ``loss(batch) / len(batches)`` for each batch (``task.backward``); the mean loss (NaN as soon
    as one is)."""
    total = 0.0
    for batch in batches:
        value = task.backward(model, batch, 1 / len(batches))
        if not math.isfinite(value):
            return value
        total += value
    return total


def clip(params: list[torch.Tensor], max_norm: float | None) -> float:
    """The total gradient norm before clipping; clipped to ``max_norm`` when that is set."""
    grads = [p for p in params if p.grad is not None]
    if not grads:
        return 0.0
    if max_norm is None:
        return float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad) for p in grads])))
    return float(torch.nn.utils.clip_grad_norm_(grads, max_norm))


def _groups(batches: list, size: int) -> list[list]:
    return [batches[i : i + size] for i in range(0, len(batches), size)]


def _lr(scheduler) -> float:
    """The largest learning rate of the parameter groups (the output end's, with layer-wise decay)."""
    return max(scheduler.get_last_lr())


def _each(callbacks: list[Callback], hook: str, state: TrainState) -> None:
    for callback in callbacks:
        getattr(callback, hook)(state)
