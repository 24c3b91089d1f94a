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
from finetuner_core.training.callbacks import LoggingCallback, StopCallback
from finetuner_core.training.loop import train

logger = logging.getLogger(__name__)


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
    if eval_data:
        _evaluate(store, run_id, "before", model, eval_data, ks, log)
    state = train(model, train_data, config, [LoggingCallback(log, config.log_every), StopCallback(should_stop)])
    if state.stop:
        log("cancelled")
        store.set_status(run_id, RunStatus.CANCELLED)
        return
    if eval_data:
        _evaluate(store, run_id, "after", model, eval_data, ks, log)
    model.save(store.artifact_dir(run_id))
    if config.to_onnx:
        exported = export_onnx(model, store.artifact_dir(run_id) / "onnx")
        log(f"exported to ONNX: {', '.join(path.name for path in exported)}")
    files = write_manifest(store.artifact_dir(run_id))
    log(f"model saved: {len(files)} files, {sum(f['size'] for f in files) / 1e6:.1f} MB")
    store.set_status(run_id, RunStatus.FINISHED)


def _evaluate(store, run_id, stage, model, eval_data, ks, log) -> None:
    log(f"evaluating ({stage}) on {len(eval_data)} items")
    evaluate = evaluate_pairs if isinstance(eval_data[0], PairItem) else evaluate_labeled
    metrics = evaluate(model, eval_data, ks)
    store.set_metrics(run_id, stage, metrics)
    shown = ", ".join(f"{k} {v:.4f}" for k, v in metrics.items() if k.startswith(("precision@1", "mrr@")))
    log(f"metrics {stage}: {shown}")
