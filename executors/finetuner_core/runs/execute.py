"""One run from start to end: load the model, evaluate, train, evaluate again, save the artifact."""

from __future__ import annotations

import logging
import shutil

from finetuner_core.callbacks.base import Callback
from finetuner_core.callbacks.best_model import BestModelCheckpoint
from finetuner_core.callbacks.early_stopping import EarlyStopping
from finetuner_core.callbacks.evaluation import EvaluationCallback
from finetuner_core.callbacks.log import LoggingCallback
from finetuner_core.callbacks.loggers import build_logger
from finetuner_core.callbacks.stop import StopCallback
from finetuner_core.callbacks.wiseft import WiSEFT
from finetuner_core.evaluation.routines import evaluate_records
from finetuner_core.models.base import EmbeddingModel
from finetuner_core.models.build import build_model
from finetuner_core.models.onnx_export import export_onnx
from finetuner_core.runs.artifact import write_manifest
from finetuner_core.runs.context import CHECKPOINT_FOLDER, RunContext
from finetuner_core.runs.continuation import artifact_folder, is_run_source, load_continued
from finetuner_core.runs.distributed import launch
from finetuner_core.runs.model_card import data_summary, write_model_card
from finetuner_core.runs.store import RunStore
from finetuner_core.storage.models import workspace_models
from finetuner_core.training.checkpoint import has_checkpoint
from finetuner_core.training.distributed import DistributedModel, SharedStop, shared_batch_size
from finetuner_core.training.loop import train
from finetuner_core.training.seeding import seed_everything
from finetuner_protocol.logs import Building, Evaluating, Metrics, Saved
from finetuner_protocol.runs import STAGE_AFTER, STAGE_BEFORE, RunStatus, step_stage

logger = logging.getLogger(__name__)
__all__ = ["CHECKPOINT_FOLDER", "RunContext", "TrainingFailed", "execute_run", "remove_checkpoint"]


class TrainingFailed(RuntimeError):
    """Training stopped on an error it cannot go on from (e.g. a non-finite loss); the message says which."""


def execute_run(run: RunContext) -> None:
    """Run ``run`` to a final status. Never raises: a failure is recorded as FAILED with its reason.

    A run whose ``distributed`` settings ask for several processes is handed to torchrun (runs.distributed); each
    of its workers comes back here with its ``ranks``. The lead rank does what a run alone does; the others train
    the same steps silently and record nothing (their ``store`` may be a reader of the run's folder alone): their
    errors propagate, so that their process fails and torchrun ends the others.
    """
    if not run.lead:
        _execute(run)
        return
    store = run.records
    try:
        if run.ranks is None:
            store.set_status(run.run_id, RunStatus.STARTED)
            if run.config.distributed.enabled(run.config.device):
                launch(run)
                return
        _execute(run)
    except Exception as exc:  # the run fails, the trainer lives on
        logger.exception("run %s failed", run.run_id)
        run.log(f"failed: {type(exc).__name__}: {exc}")
        store.set_status(run.run_id, RunStatus.FAILED, error=f"{type(exc).__name__}: {exc}")
        try:
            remove_checkpoint(store, run.run_id)  # a failed run is not resumed
        except Exception:  # e.g. a run whose config cannot be read: the run has failed already
            logger.exception("run %s: the training checkpoint was not removed", run.run_id)


def remove_checkpoint(store: RunStore, run_id: str) -> None:
    """Remove the run's training checkpoint (it is needed only to resume), unless its config keeps it."""
    folder = store.path(run_id) / CHECKPOINT_FOLDER
    if folder.exists() and not store.config(run_id).keep_checkpoint:
        shutil.rmtree(folder, ignore_errors=True)


def _execute(run: RunContext) -> None:
    """Build the model, evaluate it, train it, evaluate it again, save it.

    With ``ranks`` (one of several processes), the model trains through DistributedModel and every rank stops
    when the lead does; only the lead evaluates and writes, the others return after training.
    """
    config, ranks = run.config, run.ranks
    run.log(Building(model=config.model, device=config.device))
    seed_everything(config.seed)  # new layers (projections, MLPs) start alike in every run and on every rank
    model = _model(run)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    run.log(
        f"{model.family} {model.modality} model on {model.device}, {model.dim}-d embeddings, "
        f"{trainable:,} trainable parameters; {len(run.train_data)} training items, loss {config.loss_name}"
    )
    resume = has_checkpoint(run.checkpoints)
    before = run.records.metrics(run.run_id).get(STAGE_BEFORE) if resume and run.lead else None
    if before is None and run.eval_data:
        before = _evaluate(run, STAGE_BEFORE, model)
    callbacks = _callbacks(run, model, before) if run.lead else []
    if ranks is not None:
        config, note = shared_batch_size(model, run.train_data, config, ranks)
        run.log(f"training on {ranks.world_size} processes ({ranks.backend}), each embedding its share of every batch")
        if note:
            run.log(note)
        callbacks.append(SharedStop(ranks.lead_rank))
    state = train(
        model if ranks is None else DistributedModel(model),
        run.train_data,
        config,
        callbacks,
        checkpoint_dir=run.checkpoints if run.lead else None,
        resume=run.checkpoints if resume else False,
    )
    if not run.lead:
        return
    _finish(run, model, state)


def _model(run: RunContext) -> EmbeddingModel:
    """The model a run starts from: an earlier run's artifact (``runs.continuation``), or the model its name
    resolves to. The lead records its source, revision included, in the run's config."""
    config = run.config
    if is_run_source(config.model_source):
        folder = artifact_folder(run.folder, config.model_source["id"])
        model = load_continued(folder, config, config.device)
    else:
        model = build_model(
            config.model, config.model_options, config.device, store=workspace_models(run.folder), progress=run.log
        )  # a download shows in the run's log as it goes
    if run.lead and model.source and model.source != config.model_source:
        run.records.set_model_source(run.run_id, model.source)
    return model


def _finish(run: RunContext, model, state) -> None:
    """After training, on the lead: the run fails, is cancelled, or is evaluated again and its artifact saved."""
    store, config = run.records, run.config
    if state.failed:
        raise TrainingFailed(state.stop_reason)
    if state.cancelled:
        run.log("cancelled")
        store.set_status(run.run_id, RunStatus.CANCELLED)
        return
    if state.stop_reason:
        run.log(state.stop_reason)
    if run.eval_data:
        _evaluate(run, STAGE_AFTER, model)
    model.save(run.artifact_dir)
    if config.to_onnx:
        exported = export_onnx(model, run.artifact_dir / "onnx")
        run.log(f"exported to ONNX: {', '.join(path.name for path in exported)}")
    summary = data_summary({"train": run.train_data, "eval": run.eval_data})
    training = {"steps": state.step, "loss": state.loss, "seconds": round(state.elapsed_s, 1)}
    shape = run.train_data[0].shape
    write_model_card(run.artifact_dir, config, store.metrics(run.run_id), summary, training=training, shape=shape)
    files = write_manifest(run.artifact_dir)
    run.log(Saved(files=len(files), size_bytes=sum(f["size"] for f in files)))
    remove_checkpoint(store, run.run_id)
    store.set_status(run.run_id, RunStatus.FINISHED)


def _callbacks(run: RunContext, model, before: dict | None) -> list[Callback]:
    """Logging, cancellation, periodic evaluation (when asked for), early stopping, the best-model checkpoint,
    WiSE-FT (on the model that is saved, so after the best model is restored), the experiment loggers."""
    config = run.config
    callbacks: list[Callback] = [LoggingCallback(every=config.log_every, emit=run.log), StopCallback(run.should_stop)]
    periodic = bool(run.eval_data) and config.eval_every_steps is not None
    keep_best = bool(run.eval_data) and config.keep_best_model and config.monitor != "loss"
    if periodic or keep_best:  # a metric monitor is also checked when training ends, to keep the best model

        def evaluate() -> dict:
            model.eval()
            try:
                return _metrics(model, run.eval_data, tuple(config.eval_ks))
            finally:
                model.train()

        def record(step: int, metrics: dict) -> None:
            _record(run, step_stage(step), metrics)

        evaluation = EvaluationCallback(
            evaluate, config.eval_every_steps, initial=before, on_metrics=record, at_end=keep_best
        )
        callbacks.append(evaluation)
    callbacks.append(EarlyStopping(config.monitor, config.early_stopping_patience, config.monitor_mode))
    if keep_best:
        callbacks.append(BestModelCheckpoint(model, config.monitor, config.monitor_mode, log=run.log))
    if config.wise_ft_alpha is not None:
        callbacks.append(WiSEFT(model, config.wise_ft_alpha, run.log))
    params, name = config.model_dump(mode="json"), config.run_name or run.run_id
    for logger_name in config.loggers:
        folder = run.folder / "logs" / logger_name
        callbacks.append(build_logger(logger_name, folder, params, config.log_every, name))
    return callbacks


def _evaluate(run: RunContext, stage: str, model) -> dict:
    run.log(Evaluating(stage=stage, items=len(run.eval_data)))
    metrics = _metrics(model, run.eval_data, tuple(run.config.eval_ks))
    _record(run, stage, metrics)
    return metrics


def _metrics(model, eval_data, ks) -> dict:
    """The same evaluation as before and after training, by the data's shape (evaluation.routines): labeled
    items by label; text-image and query-document pairs by retrieval, scored pairs by correlation."""
    return evaluate_records(model, eval_data, ks)


def _record(run: RunContext, stage: str, metrics: dict) -> None:
    run.records.set_metrics(run.run_id, stage, metrics)
    run.log(Metrics(stage=stage, metrics={k: v for k, v in metrics.items() if isinstance(v, int | float)}))
