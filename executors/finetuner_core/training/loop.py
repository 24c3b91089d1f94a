"""The training loop: a batch from the task, its loss, a step. Everything else is a callback."""

from __future__ import annotations

import time

import torch

from finetuner_core.config import FitConfig
from finetuner_core.training.callbacks import Callback
from finetuner_core.training.state import TrainState
from finetuner_core.training.tasks import make_task


def train(model, records: list, config: FitConfig, callbacks: list[Callback] = ()) -> TrainState:
    """Fine-tune ``model`` (an :class:`EmbeddingModel`) in place on labeled items or text-image pairs."""
    torch.manual_seed(config.seed)
    task = make_task(records, config)
    sampler = task.sampler
    total = len(sampler) * config.epochs
    total = min(total, config.max_steps) if config.max_steps else total
    optimizer = _optimizer(model, config)
    scheduler = _warmup_linear(optimizer, total, config.warmup_ratio)
    state = TrainState(epochs=config.epochs, total_steps=total)
    _each(callbacks, "on_train_begin", state)
    model.train()
    start = time.perf_counter()
    for epoch in range(config.epochs):
        state.epoch = epoch
        sampler.set_epoch(epoch)
        for batch in sampler:
            loss = task.loss(model, batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            state.step += 1
            state.loss = float(loss.detach())
            state.learning_rate = scheduler.get_last_lr()[0]
            state.elapsed_s = time.perf_counter() - start
            _each(callbacks, "on_step_end", state)
            if state.stop or state.step >= total:
                break
        _each(callbacks, "on_epoch_end", state)
        if state.stop or state.step >= total:
            break
    model.eval()
    _each(callbacks, "on_train_end", state)
    return state


def _optimizer(module: torch.nn.Module, config: FitConfig) -> torch.optim.Optimizer:
    cls = getattr(torch.optim, config.optimizer)
    params = [p for p in module.parameters() if p.requires_grad]
    try:
        return cls(params, lr=config.learning_rate, **config.optimizer_options)
    except TypeError as exc:
        raise ValueError(f"optimizer_options do not fit {config.optimizer}: {exc}") from None


def _warmup_linear(optimizer: torch.optim.Optimizer, total: int, warmup_ratio: float):
    """Linear warm-up to the peak learning rate, then linear decay to zero."""
    warmup = max(1, int(total * warmup_ratio))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total - step) / max(1, total - warmup))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _each(callbacks: list[Callback], hook: str, state: TrainState) -> None:
    for callback in callbacks:
        getattr(callback, hook)(state)
