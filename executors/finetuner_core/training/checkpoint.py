"""The training checkpoint: everything needed to go on with a training exactly where it stopped.

One file, ``checkpoint.pt`` in the checkpoint folder, replaced atomically (written to a temporary file, then
``os.replace``) every ``every_steps`` steps, at the end of every epoch and when training ends or is stopped;
only the latest is kept. It holds the model's weights, the main optimizer's and the task's own optimizers'
states, the loss module's state (the class centres of ArcFace / CosFace live in the task's ``loss_fn``, read
with ``getattr(task, "loss_fn", None)``), the scheduler, the fp16 loss scaler, the progress (step, epoch, steps
done in the epoch), every random generator's state, the state of the callbacks that have one (early-stopping
counters, the best model's value and weights), the batch size training runs with and the configuration.

It is written with ``torch.save`` and read with ``torch.load(..., weights_only=True)``: plain tensors, numbers,
strings, lists and dicts, no pickled objects. Training resumes from the next batch of the same epoch (an
epoch's batches are the same for the same seed, so those already done are skipped); settings that shape the
optimisation must be the same as when the checkpoint was written (:data:`FREE_ON_RESUME` may change).
A training that fails (e.g. on a non-finite loss) keeps its previous checkpoint.
"""

from __future__ import annotations

import os
import pickle
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from finetuner_core.callbacks.base import Callback
from finetuner_core.callbacks.state import TrainState
from finetuner_core.training.seeding import rng_state, set_rng_state
from finetuner_protocol.settings import FitSettings

FORMAT = "finetuner-training-checkpoint"
VERSION = 1
FILE_NAME = "checkpoint.pt"
PROGRESS = ("step", "epoch", "epoch_step", "loss", "learning_rate", "grad_norm", "elapsed_s", "skipped_steps")
FREE_ON_RESUME = frozenset(
    {
        "model_source",  # recorded by the run once its model is built (the revision), not a setting
        "run_name",
        "log_every",
        "eval_every_steps",
        "eval_ks",
        "monitor",
        "early_stopping_patience",
        "keep_best_model",
        "to_onnx",
        "csv_options",
        "device",
        "precision",
        "deterministic",
        "checkpoint_every_steps",
        "batch_size",  # compared with the batch size the checkpoint trained with, when set
    }
)


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or does not fit this training; the message says why."""


@dataclass
class TrainingParts:
    """What a checkpoint saves and restores, as the loop built it."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    task_optimizers: list[torch.optim.Optimizer]
    loss: nn.Module | None
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler | None
    callbacks: list[Callback]
    config: FitSettings


def checkpoint_file(location: str | Path) -> Path:
    """The checkpoint file of a folder (or the file itself: a path ending in ``.pt`` that is not a folder)."""
    location = Path(location)
    return location if location.suffix == ".pt" and not location.is_dir() else location / FILE_NAME


def has_checkpoint(location: str | Path) -> bool:
    """Whether there is a checkpoint to resume from (``train(..., resume=True)`` needs one)."""
    return checkpoint_file(location).is_file()


def capture(parts: TrainingParts, state: TrainState, epoch_done: bool = False) -> dict[str, Any]:
    """The checkpoint of the training after ``state.step`` (after the epoch's end when ``epoch_done``)."""
    progress = {name: getattr(state, name) for name in PROGRESS}
    if epoch_done:
        progress.update(epoch=state.epoch + 1, epoch_step=0)
    progress.update(metrics=dict(state.metrics), metrics_step=state.metrics_step)
    return {
        "format": FORMAT,
        "version": VERSION,
        "config": parts.config.model_dump(mode="json"),
        "batch_size": parts.config.batch_size,
        "model": parts.model.state_dict(),
        "optimizer": parts.optimizer.state_dict(),
        "task_optimizers": [optimizer.state_dict() for optimizer in parts.task_optimizers],
        "loss": parts.loss.state_dict() if parts.loss is not None else None,
        "scheduler": parts.scheduler.state_dict(),
        "scaler": parts.scaler.state_dict() if parts.scaler is not None else None,
        "progress": progress,
        "callbacks": {key: callback.state_dict() for key, callback in keyed(parts.callbacks).items()},
        "rng": rng_state(),
    }


def save_checkpoint(location: str | Path, payload: dict[str, Any]) -> Path:
    """Write ``payload`` to the checkpoint file, atomically: a reader sees the old file or the new one."""
    path = checkpoint_file(location)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as file:
            torch.save(payload, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(location: str | Path) -> dict[str, Any]:
    """Read and check a checkpoint; :class:`CheckpointError` when it is missing, unreadable or not one."""
    path = checkpoint_file(location)
    if not path.is_file():
        raise CheckpointError(f"no training checkpoint to resume from at {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError) as exc:
        raise CheckpointError(f"{path} is not a readable training checkpoint: {_first_line(exc)}") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a training checkpoint (no {FORMAT!r} marker)")
    if payload.get("version") != VERSION:
        raise CheckpointError(f"{path} has checkpoint version {payload.get('version')!r}; this code reads {VERSION}")
    return payload


def check_config(payload: dict[str, Any], config: FitSettings) -> None:
    """Refuse to resume with settings that would change the optimisation, naming each one."""
    saved, current = payload["config"], config.model_dump(mode="json")
    changed = [
        (name, saved[name], current[name])
        for name in sorted(saved.keys() & current.keys())
        if name not in FREE_ON_RESUME and saved[name] != current[name]
    ]
    if config.batch_size is not None and config.batch_size != payload["batch_size"]:
        changed.append(("batch_size", payload["batch_size"], config.batch_size))
    if changed:
        details = "; ".join(f"{name} {before!r} -> {after!r}" for name, before, after in changed)
        raise CheckpointError(f"the checkpoint was written with other settings: {details}")


def restore(parts: TrainingParts, payload: dict[str, Any], state: TrainState) -> None:
    """Load a checkpoint into the freshly built parts and the state; the random generators come last."""
    try:
        parts.model.load_state_dict(payload["model"])
        parts.optimizer.load_state_dict(payload["optimizer"])
        if len(payload["task_optimizers"]) != len(parts.task_optimizers):
            raise ValueError(
                f"{len(payload['task_optimizers'])} loss optimizer(s), the task has {len(parts.task_optimizers)}"
            )
        for optimizer, saved in zip(parts.task_optimizers, payload["task_optimizers"], strict=True):
            optimizer.load_state_dict(saved)
        if (payload["loss"] is None) != (parts.loss is None):
            raise ValueError("the loss's learned state does not match the loss")
        if parts.loss is not None:
            parts.loss.load_state_dict(payload["loss"])
        parts.scheduler.load_state_dict(payload["scheduler"])
        if parts.scaler is not None and payload["scaler"]:
            parts.scaler.load_state_dict(payload["scaler"])
        for key, callback in keyed(parts.callbacks).items():
            if key in payload["callbacks"]:
                callback.load_state_dict(payload["callbacks"][key])
    except (RuntimeError, ValueError, KeyError) as exc:
        raise CheckpointError(f"the checkpoint does not fit this training: {_first_line(exc)}") from None
    for name, value in payload["progress"].items():
        setattr(state, name, value)
    set_rng_state(payload["rng"])


def keyed(callbacks: list[Callback]) -> dict[str, Callback]:
    """Callbacks that keep a state (they override ``state_dict``), by class name (``Name#2`` for the second of a
    class)."""
    keys: dict[str, Callback] = {}
    for callback in callbacks:
        if getattr(type(callback), "state_dict", Callback.state_dict) is Callback.state_dict:
            continue
        name = type(callback).__name__
        count = sum(1 for key in keys if key.split("#")[0] == name)
        keys[f"{name}#{count + 1}" if count else name] = callback
    return keys


def resume_note(payload: dict[str, Any]) -> str:
    progress = payload["progress"]
    return (
        f"resuming from the checkpoint of step {progress['step']} "
        f"(epoch {progress['epoch'] + 1}, {progress['epoch_step']} step(s) into it)"
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class TrainingCheckpoint(Callback):
    """Writes the training checkpoint to ``directory`` every ``every_steps`` steps (None: only at the end of
    every epoch), at the end of every epoch, and when training ends or is asked to stop; not after a failure.

    The loop attaches the parts it built (:meth:`attach`) and runs this callback after all the others, so that it
    sees their state after each step.
    """

    def __init__(self, directory: str | Path, every_steps: int | None = None):
        if every_steps is not None and every_steps < 1:
            raise ValueError(f"every_steps must be >= 1 or None, got {every_steps}")
        self.path = checkpoint_file(directory)
        self.every_steps = every_steps
        self.parts: TrainingParts | None = None
        self.saved_step: int | None = None

    def attach(self, parts: TrainingParts) -> None:
        self.parts = parts

    def on_step_end(self, state: TrainState) -> None:
        due = self.every_steps is not None and state.step % self.every_steps == 0
        if due or state.stop or state.step >= state.total_steps:
            self.save(state)

    def on_epoch_end(self, state: TrainState) -> None:
        self.save(state, epoch_done=True)

    def save(self, state: TrainState, epoch_done: bool = False) -> None:
        if self.parts is None:
            raise RuntimeError("TrainingCheckpoint is not attached to a training")
        if state.failed:
            return
        save_checkpoint(self.path, capture(self.parts, state, epoch_done))
        self.saved_step = state.step
