"""One run from start to end: load the model, evaluate, train, evaluate again, save the artifact."""

from __future__ import annotations

import logging
import shutil

from finetuner_core.evaluation.evaluate import evaluate_labeled
from finetuner_core.evaluation.pairs import evaluate_pairs
from finetuner_core.models.build import build_model
from finetuner_core.models.onnx_export import export_onnx
from finetuner_core.runs.artifact import write_manifest
from finetuner_core.runs.distributed import launch
from finetuner_core.runs.model_card import data_summary, write_model_card
from finetuner_core.runs.store import RunStatus, RunStore
from finetuner_core.training.callbacks import (
    BestModelCheckpoint,
    Callback,
    EarlyStopping,
    EvaluationCallback,
    LoggingCallback,
    StopCallback,
)
from finetuner_core.training.checkpoint import has_checkpoint
from finetuner_core.training.distributed import DistributedModel, Ranks, SharedStop, shared_batch_size
from finetuner_core.training.loggers import build_logger
from finetuner_core.training.loop import train
from finetuner_core.training.seeding import seed_everything
from finetuner_core.training.wiseft import WiSEFT
from finetuner_protocol.data.records import LabeledItem

logger = logging.getLogger(__name__)
CHECKPOINT_FOLDER = "checkpoint"  # in the run's folder: the latest training checkpoint, resumed after a crash


class TrainingFailed(RuntimeError):
    """Training stopped on an error it cannot go on from (e.g. a non-finite loss); the message says which."""


def execute_run(store: RunStore, run_id: str, should_stop=lambda: False, ranks: Ranks | None = None) -> None:
    """Run ``run_id`` to a final status. Never raises: a failure is recorded as FAILED with its reason.

    A run whose ``distributed`` settings ask for several processes is handed to torchrun (runs.distributed); each
    of its workers comes back here with its ``ranks``. The lead rank does what a run alone does; the others train
    the same steps silently and record nothing (``store`` may then be a reader of the run's folder alone): their
    errors propagate, so that their process fails and torchrun ends the others.
    """
    if ranks is not None and not ranks.lead:
        _execute(store, run_id, lambda message: None, lambda: False, ranks)
        return

    def log(message: str) -> None:
        logger.info("run %s: %s", run_id, message)
        store.log(run_id, message)

    try:
        if ranks is None:
            store.set_status(run_id, RunStatus.STARTED)
            config = store.config(run_id)
            if config.distributed.enabled(config.device):
                launch(store, run_id, should_stop, log)
                return
        _execute(store, run_id, log, should_stop, ranks)
    except Exception as exc:  # the run fails, the trainer lives on
        logger.exception("run %s failed", run_id)
        log(f"failed: {type(exc).__name__}: {exc}")
        store.set_status(run_id, RunStatus.FAILED, error=f"{type(exc).__name__}: {exc}")
        try:
            remove_checkpoint(store, run_id)  # a failed run is not resumed
        except Exception:  # e.g. a run whose config cannot be read: the run has failed already
            logger.exception("run %s: the training checkpoint was not removed", run_id)


def remove_checkpoint(store: RunStore, run_id: str) -> None:
    """Remove the run's training checkpoint (it is needed only to resume), unless its config keeps it."""
    folder = store.path(run_id) / CHECKPOINT_FOLDER
    if folder.exists() and not store.config(run_id).keep_checkpoint:
        shutil.rmtree(folder, ignore_errors=True)


def _execute(store: RunStore, run_id: str, log, should_stop, ranks: Ranks | None = None) -> None:
    """Build the model, evaluate it, train it, evaluate it again, save it.

    With ``ranks`` (one of several processes), the model trains through DistributedModel and every rank stops
    when the lead does; only the lead evaluates and writes, the others return after training.
    """
    lead = ranks is None or ranks.lead
    config = store.config(run_id)
    train_data = store.data(run_id, "train")
    eval_data = store.data(run_id, "eval") if lead else []
    log(f"building model {config.model!r} on device {config.device!r}")
    seed_everything(config.seed)  # new layers (projections, MLPs) start alike in every run and on every rank
    model = build_model(config.model, config.model_options, config.device)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    log(
        f"{model.family} {model.modality} model on {model.device}, {model.dim}-d embeddings, "
        f"{trainable:,} trainable parameters; {len(train_data)} training items, loss {config.loss_name}"
    )
    ks = tuple(config.eval_ks)
    checkpoints = store.path(run_id) / CHECKPOINT_FOLDER
    resume = has_checkpoint(checkpoints)
    before = store.metrics(run_id).get("before") if resume and lead else None
    if before is None and eval_data:
        before = _evaluate(store, run_id, "before", model, eval_data, ks, log)
    callbacks = _callbacks(store, run_id, config, model, eval_data, before, log, should_stop) if lead else []
    if ranks is not None:
        config, note = shared_batch_size(model, train_data, config, ranks)
        log(f"training on {ranks.world_size} processes ({ranks.backend}), each embedding its share of every batch")
        if note:
            log(note)
        callbacks.append(SharedStop(ranks.lead_rank))
    state = train(
        model if ranks is None else DistributedModel(model),
        train_data,
        config,
        callbacks,
        checkpoint_dir=checkpoints if lead else None,
        resume=checkpoints if resume else False,
    )
    if not lead:
        return
    if state.failed:
        raise TrainingFailed(state.stop_reason)
    if state.cancelled:
        log("cancelled")
        store.set_status(run_id, RunStatus.CANCELLED)
        return
    if state.stop_reason:
        log(state.stop_reason)
    if eval_data:
        _evaluate(store, run_id, "after", model, eval_data, ks, log)
    model.save(store.artifact_dir(run_id))
    if config.to_onnx:
        exported = export_onnx(model, store.artifact_dir(run_id) / "onnx")
        log(f"exported to ONNX: {', '.join(path.name for path in exported)}")
    summary = data_summary({"train": train_data, "eval": eval_data})
    training = {"steps": state.step, "loss": state.loss, "seconds": round(state.elapsed_s, 1)}
    write_model_card(store.artifact_dir(run_id), config, store.metrics(run_id), summary, training=training)
    files = write_manifest(store.artifact_dir(run_id))
    log(f"model saved: {len(files)} files, {sum(f['size'] for f in files) / 1e6:.1f} MB")
    remove_checkpoint(store, run_id)
    store.set_status(run_id, RunStatus.FINISHED)


def _callbacks(store, run_id, config, model, eval_data, before, log, should_stop) -> list[Callback]:
    """Logging, cancellation, periodic evaluation (when asked for), early stopping, the best-model checkpoint,
    WiSE-FT (on the model that is saved, so after the best model is restored), the experiment loggers."""
    callbacks: list[Callback] = [LoggingCallback(log, config.log_every), StopCallback(should_stop)]
    periodic = bool(eval_data) and config.eval_every_steps is not None
    keep_best = bool(eval_data) and config.keep_best_model and config.monitor != "loss"
    if periodic or keep_best:  # a metric monitor is also checked when training ends, to keep the best model

        def evaluate() -> dict:
            model.eval()
            try:
                return _metrics(model, eval_data, tuple(config.eval_ks))
            finally:
                model.train()

        def record(step: int, metrics: dict) -> None:
            _record(store, run_id, f"step {step}", metrics, log)

        evaluation = EvaluationCallback(
            evaluate, config.eval_every_steps, initial=before, on_metrics=record, at_end=keep_best
        )
        callbacks.append(evaluation)
    callbacks.append(EarlyStopping(config.monitor, config.early_stopping_patience, config.monitor_mode))
    if keep_best:
        callbacks.append(BestModelCheckpoint(model, config.monitor, config.monitor_mode, log=log))
    if config.wise_ft_alpha is not None:
        callbacks.append(WiSEFT(model, config.wise_ft_alpha, log))
    params, name = config.model_dump(mode="json"), config.run_name or run_id
    for logger_name in config.loggers:
        folder = store.path(run_id) / "logs" / logger_name
        callbacks.append(build_logger(logger_name, folder, params, config.log_every, name))
    return callbacks


def _evaluate(store, run_id, stage, model, eval_data, ks, log) -> dict:
    log(f"evaluating ({stage}) on {len(eval_data)} items")
    metrics = _metrics(model, eval_data, ks)
    _record(store, run_id, stage, metrics, log)
    return metrics


def _metrics(model, eval_data, ks) -> dict:
    """The same evaluation as before and after training: labeled items by label; text-image and query-document
    pairs by retrieval, scored pairs by correlation (evaluation.pairs)."""
    evaluate = evaluate_labeled if isinstance(eval_data[0], LabeledItem) else evaluate_pairs
    return evaluate(model, eval_data, ks)


def _record(store, run_id, stage, metrics, log) -> None:
    store.set_metrics(run_id, stage, metrics)
    shown = ", ".join(f"{k} {v:.4f}" for k, v in metrics.items() if k.startswith(("precision@1", "mrr@", "spearman")))
    log(f"metrics {stage}: {shown}")
