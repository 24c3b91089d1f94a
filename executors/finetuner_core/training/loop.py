"""The training loop: sample a batch, embed, (mine), compute the loss, step. Everything else is a callback."""

from __future__ import annotations

import time

import torch

from finetuner_core.config import FitConfig
from finetuner_core.data.records import LabeledText
from finetuner_core.training import losses
from finetuner_core.training.callbacks import Callback
from finetuner_core.training.samplers import SAMPLERS
from finetuner_core.training.state import TrainState


def train(model, records: list[LabeledText], config: FitConfig, callbacks: list[Callback] = ()) -> TrainState:
    """Fine-tune ``model`` (a :class:`TextEmbeddingModel`) on labeled ``records`` in place."""
    torch.manual_seed(config.seed)
    texts = [record.text for record in records]
    class_ids = _class_ids([record.label for record in records])
    sampler = SAMPLERS[config.sampler].build(
        [record.label for record in records], config.batch_size, config.num_items_per_class, seed=config.seed
    )
    loss_fn = losses.build(losses.LOSSES, config.loss, config.loss_options)
    miner = losses.build(losses.MINERS, config.miner, config.miner_options) if config.uses_miner else None
    total = len(sampler) * config.epochs
    total = min(total, config.max_steps) if config.max_steps else total
    optimizer = _optimizer(model.module, config)
    scheduler = _warmup_linear(optimizer, total, config.warmup_ratio)
    state = TrainState(epochs=config.epochs, total_steps=total)
    _each(callbacks, "on_train_begin", state)
    model.module.train()
    start = time.perf_counter()
    for epoch in range(config.epochs):
        state.epoch = epoch
        sampler.set_epoch(epoch)
        for batch in sampler:
            labels = class_ids[batch].to(model.device)
            embeddings = model.embed([texts[i] for i in batch])
            loss = (
                loss_fn(embeddings, labels, miner(embeddings, labels))
                if miner
                else loss_fn(embeddings, labels)
            )
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
    model.module.eval()
    _each(callbacks, "on_train_end", state)
    return state


def _class_ids(labels: list[str]) -> torch.Tensor:
    ids = {label: i for i, label in enumerate(sorted(set(labels)))}
    return torch.tensor([ids[label] for label in labels])


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
