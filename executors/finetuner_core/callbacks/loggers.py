"""Experiment loggers: training callbacks that write a run to TensorBoard, MLflow or Weights & Biases, offline.

Each logger writes to its own folder (a run's are ``<run folder>/logs/<logger>/``) and never uses the network:
TensorBoard event files; an MLflow file store (tracking URI ``file:<folder>``, no server); a W&B run in
offline mode (``wandb sync`` uploads it later, from a machine that may). What each one records:

- at train begin: the run's config as hyperparameters (nested fields flattened to ``model_options.output_dim``);
- every ``every`` steps (the fit's ``log_every``; unset: every :data:`DEFAULT_EVERY` steps) and at the last one:
  ``train/loss``, ``train/learning_rate``, ``train/grad_norm``;
- after each evaluation (a new ``state.metrics_step``, including the one before training): ``eval/<metric>``
  at the step it was made (MLflow names cannot hold ``@``: ``mrr@10`` becomes ``eval/mrr_at_10`` there);
- at train end: how the run ended (finished, failed, cancelled), then the logger closes. A logger dropped
  without a train end (training raised) closes as failed.

The packages are optional (the ``loggers`` extra); building a logger whose package is missing raises
:class:`LoggerNotAvailableError` naming the package to install.
"""

from __future__ import annotations

import importlib
import json
import math
import os
import re
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

from finetuner_core.callbacks.base import Callback
from finetuner_core.callbacks.state import TrainState

Closer = Callable[[str], None]
DEFAULT_EVERY = 10  # steps between training scalars when the fit's log_every is unset


class LoggerNotAvailableError(ImportError):
    """An experiment logger was asked for whose package is not installed."""


class ExperimentLogger(Callback):
    """Decides what is logged when; a subclass says how (``_open``, ``_scalars``) and needs ``package``."""

    name = ""
    module = ""
    package = ""

    def __init__(
        self, directory: str | Path, params: dict[str, Any], every: int | None = DEFAULT_EVERY, run_name: str = "run"
    ):
        every = DEFAULT_EVERY if every is None else every
        if every < 1:
            raise ValueError(f"every must be >= 1, got {every}")
        self.library = require(self.module, self.package, self.name)
        self.directory, self.params, self.every, self.run_name = Path(directory), params, every, run_name
        self._logged_step = 0
        self._metric_steps: set[int] = set()
        self._closer: weakref.finalize | None = None

    # --- what a backend provides ----------------------------------------------------------------------------
    def _open(self) -> Closer:
        """Start the run and write the hyperparameters; return a function that ends it with a status. That
        function must not hold the logger (it is the logger's finalizer)."""
        raise NotImplementedError

    def _scalars(self, values: dict[str, float], step: int) -> None:
        raise NotImplementedError

    # --- hooks ----------------------------------------------------------------------------------------------
    def on_train_begin(self, state: TrainState) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self._closer = weakref.finalize(self, self._open(), "failed")
        self._metrics(state)

    def on_step_end(self, state: TrainState) -> None:
        if state.step % self.every == 0 or state.step == state.total_steps:
            self._training(state)
        self._metrics(state)

    def on_epoch_end(self, state: TrainState) -> None:
        self._metrics(state)

    def on_train_end(self, state: TrainState) -> None:
        if state.step > self._logged_step:
            self._training(state)
        self._metrics(state)
        self.close("failed" if state.failed else "cancelled" if state.cancelled else "finished")

    def close(self, status: str = "finished") -> None:
        """End the run with ``status`` (finished, failed or cancelled); nothing happens a second time."""
        if self._closer is not None and (pending := self._closer.detach()) is not None:
            _, close, _, _ = pending
            close(status)

    # --- what is logged -------------------------------------------------------------------------------------
    def _training(self, state: TrainState) -> None:
        values = {"train/loss": state.loss, "train/learning_rate": state.learning_rate}
        if math.isfinite(state.grad_norm):
            values["train/grad_norm"] = state.grad_norm
        self._scalars(values, state.step)
        self._logged_step = state.step

    def _metrics(self, state: TrainState) -> None:
        step = state.metrics_step
        if step is None or step in self._metric_steps or not state.metrics:
            return
        self._metric_steps.add(step)
        numbers = {name: value for name, value in state.metrics.items() if isinstance(value, int | float)}
        self._scalars({f"eval/{name}": float(value) for name, value in numbers.items()}, step)


class TensorBoardLogger(ExperimentLogger):
    """Event files of ``torch.utils.tensorboard.SummaryWriter``; the config goes to the HParams dashboard (a
    session start with the hyperparameters, a session end with the status) and, as JSON, to the Text one."""

    name, module, package = "tensorboard", "tensorboard", "tensorboard==2.20.0"

    def _open(self) -> Closer:
        from tensorboard.plugins.hparams import api_pb2
        from torch.utils.tensorboard import SummaryWriter
        from torch.utils.tensorboard.summary import hparams

        writer = SummaryWriter(log_dir=str(self.directory))
        _, session_start, _ = hparams(hyperparameters(self.params), {})
        writer.file_writer.add_summary(session_start)
        writer.add_text("config", f"```json\n{json.dumps(self.params, indent=2)}\n```")
        writer.flush()
        self._writer = writer
        statuses = {"finished": api_pb2.STATUS_SUCCESS, "failed": api_pb2.STATUS_FAILURE}

        def close(status: str) -> None:
            writer.file_writer.add_summary(_session_end(statuses.get(status, api_pb2.STATUS_UNKNOWN)))
            writer.close()

        return close

    def _scalars(self, values: dict[str, float], step: int) -> None:
        for tag, value in values.items():
            self._writer.add_scalar(tag, value, step)
        if any(tag.startswith("eval/") for tag in values):
            self._writer.flush()


def _session_end(status: int):
    """The HParams plugin's session end summary with ``status`` (torch's ``hparams`` only writes success)."""
    from tensorboard.compat.proto.summary_pb2 import Summary
    from tensorboard.plugins.hparams import metadata, plugin_data_pb2

    data = plugin_data_pb2.HParamsPluginData(
        session_end_info=plugin_data_pb2.SessionEndInfo(status=status, end_time_secs=time.time()),
        version=metadata.PLUGIN_DATA_VERSION,
    )
    summary_metadata = metadata.create_summary_metadata(data)
    return Summary(value=[Summary.Value(tag=metadata.SESSION_END_INFO_TAG, metadata=summary_metadata)])


class MLflowLogger(ExperimentLogger):
    """An MLflow run in a file store (tracking URI ``file:<folder>``, experiment ``finetuner``): the config as
    params, the scalars as metrics with their step, the end status as the run's status."""

    name, module, package = "mlflow", "mlflow", "mlflow-skinny==3.17.2"
    experiment = "finetuner"

    def __init__(self, *args, **kwargs):
        # before mlflow is imported: no usage reports, and the file store (offline, no server) is chosen on purpose
        os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        super().__init__(*args, **kwargs)

    def _open(self) -> Closer:
        from mlflow.entities import Param
        from mlflow.tracking import MlflowClient
        from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH, MAX_PARAMS_TAGS_PER_BATCH

        client = MlflowClient(tracking_uri=self.directory.resolve().as_uri())
        found = client.get_experiment_by_name(self.experiment)
        experiment_id = found.experiment_id if found else client.create_experiment(self.experiment)
        run_id = client.create_run(experiment_id, run_name=self.run_name).info.run_id
        params = [Param(k, str(v)[:MAX_PARAM_VAL_LENGTH]) for k, v in hyperparameters(self.params).items()]
        for start in range(0, len(params), MAX_PARAMS_TAGS_PER_BATCH):
            client.log_batch(run_id, params=params[start : start + MAX_PARAMS_TAGS_PER_BATCH])
        self._client, self._run_id = client, run_id
        statuses = {"finished": "FINISHED", "failed": "FAILED", "cancelled": "KILLED"}
        return lambda status: client.set_terminated(run_id, statuses.get(status, "FAILED"))

    def _scalars(self, values: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(mlflow_name(key), float(value), now, step) for key, value in values.items()]
        self._client.log_batch(self._run_id, metrics=metrics)


class WandbLogger(ExperimentLogger):
    """A W&B run in offline mode under the folder (``wandb/offline-run-*``); the config as the run's config, the
    scalars as history rows at their step, the end status as its exit code."""

    name, module, package = "wandb", "wandb", "wandb==0.31.0"

    def __init__(self, *args, **kwargs):
        os.environ.setdefault("WANDB_ERROR_REPORTING", "false")  # the service would report its own errors
        super().__init__(*args, **kwargs)

    def _open(self) -> Closer:
        wandb = self.library
        settings = wandb.Settings(
            mode="offline", console="off", silent=True, save_code=False, disable_git=True, x_save_requirements=False
        )
        run = wandb.init(
            dir=str(self.directory),
            project="finetuner",
            name=self.run_name,
            config=self.params,
            mode="offline",
            reinit="create_new",  # runs of other threads stay open
            settings=settings,
        )
        self._run = run
        return lambda status: run.finish(exit_code=0 if status == "finished" else 1)

    def _scalars(self, values: dict[str, float], step: int) -> None:
        self._run.log(values, step=step)


LOGGERS: dict[str, type[ExperimentLogger]] = {
    logger.name: logger for logger in (TensorBoardLogger, MLflowLogger, WandbLogger)
}


def build_logger(
    name: str, directory: str | Path, params: dict[str, Any], every: int | None = DEFAULT_EVERY, run_name: str = "run"
) -> ExperimentLogger:
    """The logger registered as ``name``, writing under ``directory``."""
    if name not in LOGGERS:
        raise ValueError(f"unknown logger {name!r}; loggers: {', '.join(LOGGERS)}")
    return LOGGERS[name](directory, params, every, run_name)


def require(module: str, package: str, logger: str):
    """``module`` imported, or :class:`LoggerNotAvailableError` naming the package that provides it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise LoggerNotAvailableError(
            f"the {logger} logger needs the package {package.split('==')[0]!r}: pip install '{package}' "
            "(or install finetuner-selfhosted with the 'loggers' extra)"
        ) from exc


def hyperparameters(params: dict[str, Any], prefix: str = "") -> dict[str, bool | int | float | str]:
    """Nested fields flattened to dotted names; values other than bool, number and string as JSON."""
    flat: dict[str, bool | int | float | str] = {}
    for key, value in params.items():
        if isinstance(value, dict) and value:
            flat.update(hyperparameters(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value if isinstance(value, bool | int | float | str) else json.dumps(value)
    return flat


def mlflow_name(name: str) -> str:
    """A metric name MLflow accepts (letters, digits, ``_ - . / :`` and spaces): ``@`` reads ``_at_``."""
    return re.sub(r"[^\w\-./: ]", "_", name.replace("@", "_at_"))
