"""The training loop: batches from the task, their loss, a step. Everything else is a callback.

The length: ``epochs`` passes over the data, or, when ``max_steps`` is set, exactly that many steps (as in the
Hugging Face Trainer): the data is repeated, in a new order each epoch, when it holds fewer steps, and training
stops in the middle of an epoch when it holds more; ``epochs`` is then not used. The log says which.

One step is one optimizer update over ``gradient_accumulation_steps`` batches (fewer for the last step of an
epoch when the batches run out): each batch's loss is divided by the number of batches in the step, so that
for a loss that is a mean over items, the accumulated gradient is that of one batch holding them all. A step
whose loss is not finite is not applied (its gradients are dropped); callbacks see the loss and may stop.
``on_epoch_end`` runs when an epoch's batches are all done (not when training stops in the middle of one).

Before training: the seeds are set (and deterministic algorithms switched on with ``deterministic=True``), the
precision is resolved (``training.precision``), and ``batch_size=None`` is resolved by a search over real steps
(``training.batch_size``) whose changes to the weights are undone. With ``checkpoint_dir`` the training
checkpoint (``training.checkpoint``) is written there; ``resume`` goes on from it. What the loop asks of a task:
``sampler``, ``optimizers`` (the loss's own), ``notes``, ``backward(model, batch, scale)``, and, when the loss
learns parameters, ``loss_fn`` (read with ``getattr``, for the checkpoint).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from finetuner_core.callbacks.base import Callback
from finetuner_core.callbacks.state import TrainState
from finetuner_core.training import batch_size as batch_search
from finetuner_core.training.checkpoint import (
    TrainingCheckpoint,
    TrainingParts,
    check_config,
    load_checkpoint,
    restore,
    resume_note,
)
from finetuner_core.training.optimizers import build_optimizer
from finetuner_core.training.precision import Precision
from finetuner_core.training.schedulers import build_scheduler
from finetuner_core.training.seeding import deterministic_mode, seed_everything
from finetuner_core.training.tasks import make_task
from finetuner_protocol.settings import FitSettings


def train(
    model,
    records: list,
    config: FitSettings,
    callbacks: Iterable[Callback] = (),
    *,
    checkpoint_dir: str | Path | None = None,
    resume: bool | str | Path = False,
) -> TrainState:
    """Fine-tune ``model`` (an :class:`EmbeddingModel`) in place on labeled items or text-image pairs.

    ``checkpoint_dir``: write the training checkpoint there (every ``config.checkpoint_every_steps`` steps, at
    every epoch's end and when training ends or stops). ``resume``: ``True`` goes on from the checkpoint in
    ``checkpoint_dir``, a path from that checkpoint (a folder or the file).
    """
    saved = _saved_checkpoint(resume, checkpoint_dir, config)
    precision = Precision.for_device(config.precision, model.device)  # refuses what the device cannot run
    callbacks = _ordered(list(callbacks), checkpoint_dir, config)
    with deterministic_mode(config.deterministic):
        config, notes = _resolve_batch_size(model, records, config, saved)
        seed_everything(config.seed)
        if saved is not None:
            notes.append(resume_note(saved))
        run, parts = _build(model, records, config, precision, callbacks)
        state = TrainState(
            epochs=run.epochs,
            total_steps=run.total,
            learning_rate=_lr(run.scheduler),
            notes=[*run.task.notes, *length_note(run.per_epoch, config.max_steps), *notes],
            batch_size=config.batch_size,
            precision=precision.name,
        )
        _each(callbacks, "on_train_begin", state)
        if saved is not None:
            restore(parts, saved, state)
        model.train()
        run.start = time.perf_counter() - state.elapsed_s
        _epochs(run, state)
        model.eval()
        _each(callbacks, "on_train_end", state)
        return state


@dataclass
class _Run:
    """What one training works with."""

    model: nn.Module
    task: object
    config: FitSettings
    precision: Precision
    optimizers: list[torch.optim.Optimizer]
    scheduler: torch.optim.lr_scheduler.LambdaLR
    callbacks: list[Callback]
    total: int
    epochs: int
    per_epoch: int
    start: float = 0.0

    @property
    def by_epoch(self) -> bool:
        return self.config.scheduler_interval == "epoch"


def _build(model, records, config: FitSettings, precision: Precision, callbacks: list[Callback]):
    """The task, the optimizers and the schedule; the parts a checkpoint holds (attached to the checkpoint)."""
    task = make_task(records, config, model)
    per_epoch = max(1, math.ceil(len(task.sampler) / config.gradient_accumulation_steps))
    total, epochs = length(per_epoch, config.epochs, config.max_steps)
    optimizer = build_optimizer(model, config)
    units = epochs if config.scheduler_interval == "epoch" else total
    scheduler = build_scheduler(optimizer, config.scheduler, units, config.warmup_ratio, config.scheduler_options)
    optimizers = [optimizer, *task.optimizers]
    run = _Run(model, task, config, precision, optimizers, scheduler, callbacks, total, epochs, per_epoch)
    parts = TrainingParts(
        model, optimizer, list(task.optimizers), _loss_module(task), scheduler, precision.scaler, callbacks, config
    )
    for callback in callbacks:
        if isinstance(callback, TrainingCheckpoint):
            callback.attach(parts)
    return run, parts


def length(per_epoch: int, epochs: int, max_steps: int | None) -> tuple[int, int]:
    """(steps, epochs) of a training with ``per_epoch`` steps in one pass over the data: ``epochs`` passes, or
    ``max_steps`` steps over as many passes as they take."""
    if max_steps is None:
        return per_epoch * epochs, epochs
    return max_steps, math.ceil(max_steps / per_epoch)


def length_note(per_epoch: int, max_steps: int | None) -> list[str]:
    """What the log says about a length set by ``max_steps`` (nothing without it)."""
    if max_steps is None:
        return []
    passes = math.ceil(max_steps / per_epoch)
    if max_steps < per_epoch:
        how = f"training stops after {max_steps} of the {per_epoch} steps of one pass over the data"
    elif passes == 1:
        how = f"one pass over the data ({per_epoch} steps)"
    else:
        how = f"{passes} passes over the data of {per_epoch} steps each: the data is repeated"
    return [f"max_steps={max_steps} sets the length (epochs is not used): {how}"]


def _epochs(run: _Run, state: TrainState) -> None:
    """From the state's epoch and step in it (0 and 0, or where a checkpoint left off) to the end."""
    first, done = state.epoch, state.epoch_step
    for epoch in range(first, run.epochs):
        state.epoch = epoch
        run.task.sampler.set_epoch(epoch)
        groups = _groups(list(run.task.sampler), run.config.gradient_accumulation_steps)
        state.epoch_step = done if epoch == first else 0
        for batches in groups[state.epoch_step :]:
            if state.step >= run.total:
                break
            _step(run, state, batches)
            _each(run.callbacks, "on_step_end", state)
            if state.stop:
                break
        if state.epoch_step == len(groups):
            if run.by_epoch:
                run.scheduler.step()
                state.learning_rate = _lr(run.scheduler)
            _each(run.callbacks, "on_epoch_end", state)
        if state.stop or state.step >= run.total:
            break


def _step(run: _Run, state: TrainState, batches: list[list[int]]) -> None:
    loss, grad_norm, applied = optimizer_step(
        run.task, run.model, run.optimizers, batches, run.precision, run.config.max_grad_norm
    )
    state.loss, state.grad_norm = loss, grad_norm
    state.skipped_steps += int(math.isfinite(loss) and not applied)
    if not run.by_epoch:
        run.scheduler.step()
    state.step += 1
    state.epoch_step += 1
    state.learning_rate = _lr(run.scheduler)
    state.elapsed_s = time.perf_counter() - run.start


def optimizer_step(
    task, model, optimizers: list[torch.optim.Optimizer], batches, precision: Precision, max_grad_norm=None
) -> tuple[float, float, bool]:
    """One update over ``batches``: (mean loss, gradient norm before clipping, whether the update was applied).

    The gradients are unscaled (fp16) before clipping the main optimizer's parameters (the first); an update
    is not applied when the loss is not finite, or when the fp16 scaler finds overflowed gradients.
    """
    for optimizer in optimizers:
        optimizer.zero_grad(set_to_none=True)
    loss = accumulate(task, precision.view(model), batches, precision.loss_scale())
    if not math.isfinite(loss):
        return loss, math.nan, False
    precision.unscale(optimizers)
    grad_norm = clip([p for group in optimizers[0].param_groups for p in group["params"]], max_grad_norm)
    return loss, grad_norm, precision.step(optimizers)


def accumulate(task, model, batches: list[list[int]], loss_scale: float = 1.0) -> float:
    """Back-propagate ``loss(batch) * loss_scale / len(batches)`` for each batch (``task.backward``); the mean
    loss, unscaled (NaN as soon as one is)."""
    total = 0.0
    for batch in batches:
        value = task.backward(model, batch, loss_scale / len(batches)) / loss_scale
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


# --- before training --------------------------------------------------------------------------------------------


def _saved_checkpoint(resume: bool | str | Path, checkpoint_dir, config: FitSettings) -> dict | None:
    """The checkpoint to resume from (checked against ``config``), or None."""
    if resume is False or resume is None:
        return None
    if resume is True and checkpoint_dir is None:
        raise ValueError("resume=True needs checkpoint_dir (or pass the checkpoint's path as resume)")
    saved = load_checkpoint(checkpoint_dir if resume is True else resume)
    check_config(saved, config)
    return saved


def _ordered(callbacks: list[Callback], checkpoint_dir, config: FitSettings) -> list[Callback]:
    """The callbacks, with the training checkpoint (given, or made for ``checkpoint_dir``) last."""
    checkpoints = [c for c in callbacks if isinstance(c, TrainingCheckpoint)]
    if checkpoint_dir is not None:
        checkpoints.append(TrainingCheckpoint(checkpoint_dir, config.checkpoint_every_steps))
    return [c for c in callbacks if not isinstance(c, TrainingCheckpoint)] + checkpoints


def _resolve_batch_size(model, records, config: FitSettings, saved: dict | None) -> tuple[FitSettings, list[str]]:
    """``config`` with its batch size set: as given, as the checkpoint trained with, or searched for."""
    if config.batch_size is not None:
        return config, []
    if saved is not None:
        return config.model_copy(update={"batch_size": saved["batch_size"]}), []
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        raise ValueError("batch_size=None (searched) does not work across several processes; set batch_size")
    seed_everything(config.seed)
    choice = choose_batch_size(model, records, config)
    return config.model_copy(update={"batch_size": choice.batch_size}), [choice.note()]


def choose_batch_size(model, records: list, config: FitSettings, cap: int | None = None) -> batch_search.Choice:
    """Search the batch size with real training steps (``training.batch_size``); the model's weights, buffers
    and mode are as they were afterwards."""
    device = model.device
    multiple = config.num_items_per_class if config.sampler == "class" else 1
    saved = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
    was_training = model.training
    model.train()
    try:
        probe = _probe(model, records, config, Precision.for_device(config.precision, device))
        if device.type == "cuda":
            sizes = batch_search.candidate_sizes(2, cap or batch_search.CUDA_CAP, len(records), multiple)
            return batch_search.largest_that_fits(probe, sizes)
        sizes = batch_search.candidate_sizes(
            batch_search.CPU_START, cap or batch_search.CPU_CAP, len(records), multiple
        )
        return batch_search.fastest(probe, sizes)
    finally:
        model.load_state_dict(saved)
        for parameter in model.parameters():
            parameter.grad = None
        model.train(was_training)
        batch_search.release_memory()


def _probe(model, records: list, config: FitSettings, precision: Precision) -> batch_search.Probe:
    """One real step of the task at a batch size (its first batch); the number of items it held."""

    def probe(size: int) -> int:
        trial = config.model_copy(update={"batch_size": size})
        task = make_task(records, trial, model)
        batch = next(iter(task.sampler))
        optimizers = [build_optimizer(model, trial), *task.optimizers]
        optimizer_step(task, model, optimizers, [batch], precision, trial.max_grad_norm)
        for optimizer in optimizers:
            optimizer.zero_grad(set_to_none=True)
        return len(batch)

    return probe


# --- helpers ----------------------------------------------------------------------------------------------------


def _loss_module(task) -> nn.Module | None:
    """The task's loss when it has learned state (class centres), for the checkpoint."""
    loss = getattr(task, "loss_fn", None)
    return loss if isinstance(loss, nn.Module) and loss.state_dict() else None


def _groups(batches: list, size: int) -> list[list]:
    return [batches[i : i + size] for i in range(0, len(batches), size)]


def _lr(scheduler) -> float:
    """The largest learning rate of the parameter groups (the output end's, with layer-wise decay)."""
    return max(scheduler.get_last_lr())


def _each(callbacks: list[Callback], hook: str, state: TrainState) -> None:
    for callback in callbacks:
        getattr(callback, hook)(state)
