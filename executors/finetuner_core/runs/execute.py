"""One run from start to end: load the model, evaluate, train, evaluate again, save the artifact."""

from __future__ import annotations

import logging

from finetuner_core.data.records import PairItem
from finetuner_core.evaluation.evaluate import evaluate_labeled
from finetuner_core.evaluation.pairs import evaluate_pairs
from finetuner_core.models.build import build_model
from finetuner_core.models.onnx_export import export_onnx
from finetuner_core.runs.artifact import write_manifest
from finetuner_core.runs.store import RunStatus, RunStore
from finetuner_core.training.callbacks import (
    BestModelCheckpoint,
    Callback,
    EarlyStopping,
    EvaluationCallback,
    LoggingCallback,
    StopCallback,
)
from finetuner_core.training.loop import train

logger = logging.getLogger(__name__)


class TrainingFailed(RuntimeError):
    """Training stopped on an error it cannot go on from (e.g. a non-finite loss); the message says which."""


def execute_run(store: RunStore, run_id: str, should_stop=lambda: False) -> None:
    """Run ``run_id`` to a final status. Never raises: a failure is recorded as FAILED with its reason."""

    def log(message: str) -> None:
        logger.info("run %s: %s", run_id, message)
        store.log(run_id, message)

    try:
        store.set_status(run_id, RunStatus.STARTED)
        _execute(store, run_id, log, should_stop)
    except Exception as exc:  # the run fails, the trainer lives on
        logger.exception("run %s failed", run_id)
        log(f"failed: {type(exc).__name__}: {exc}")
        store.set_status(run_id, RunStatus.FAILED, error=f"{type(exc).__name__}: {exc}")


def _execute(store: RunStore, run_id: str, log, should_stop) -> None:
    config = store.config(run_id)
    train_data, eval_data = store.data(run_id, "train"), store.data(run_id, "eval")
    log(f"building model {config.model!r} on device {config.device!r}")
    model = build_model(config.model, config.model_options, config.device)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    log(
        f"{model.family} {model.modality} model on {model.device}, {model.dim}-d embeddings, "
        f"{trainable:,} trainable parameters; {len(train_data)} training items, loss {config.loss_name}"
    )
    ks = tuple(config.eval_ks)
    before = _evaluate(store, run_id, "before", model, eval_data, ks, log) if eval_data else None
    callbacks = _callbacks(store, run_id, config, model, eval_data, before, log, should_stop)
    state = train(model, train_data, config, callbacks)
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
    files = write_manifest(store.artifact_dir(run_id))
    log(f"model saved: {len(files)} files, {sum(f['size'] for f in files) / 1e6:.1f} MB")
    store.set_status(run_id, RunStatus.FINISHED)


def _callbacks(store, run_id, config, model, eval_data, before, log, should_stop) -> list[Callback]:
    """Logging, cancellation, periodic evaluation (when asked for), early stopping, the best-model checkpoint."""
    callbacks: list[Callback] = [LoggingCallback(log, config.log_every), StopCallback(should_stop)]
    periodic = bool(eval_data) and config.eval_every_steps is not None
    if periodic:

        def evaluate() -> dict:
            model.eval()
            try:
                return _metrics(model, eval_data, tuple(config.eval_ks))
            finally:
                model.train()

        def record(step: int, metrics: dict) -> None:
            _record(store, run_id, f"step {step}", metrics, log)

        callbacks.append(EvaluationCallback(evaluate, config.eval_every_steps, initial=before, on_metrics=record))
    callbacks.append(EarlyStopping(config.monitor, config.early_stopping_patience, config.monitor_mode))
    if periodic and config.keep_best_model and config.monitor != "loss":
        callbacks.append(BestModelCheckpoint(model, config.monitor, config.monitor_mode))
    return callbacks


def _evaluate(store, run_id, stage, model, eval_data, ks, log) -> dict:
    log(f"evaluating ({stage}) on {len(eval_data)} items")
    metrics = _metrics(model, eval_data, ks)
    _record(store, run_id, stage, metrics, log)
    return metrics


def _metrics(model, eval_data, ks) -> dict:
    """The same evaluation as before and after training: pairs or labeled items."""
    evaluate = evaluate_pairs if isinstance(eval_data[0], PairItem) else evaluate_labeled
    return evaluate(model, eval_data, ks)


def _record(store, run_id, stage, metrics, log) -> None:
    store.set_metrics(run_id, stage, metrics)
    shown = ", ".join(f"{k} {v:.4f}" for k, v in metrics.items() if k.startswith(("precision@1", "mrr@")))
    log(f"metrics {stage}: {shown}")
