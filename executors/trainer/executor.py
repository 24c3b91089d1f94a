"""Trainer: holds users' datasets and runs, and trains in the background.

Every endpoint needs a valid token (the parameters' ``token``); a user sees only its own datasets and runs
(another user's id is "not found"). ``/fit`` answers with the run id as soon as the run is stored; a worker
thread then evaluates the base model, trains, evaluates again and saves the artifact. Every answer is one
``result`` document (JSON payload).

- ``/datasets/begin`` ``/datasets/upload`` ``/datasets/commit`` ``/datasets/list`` ``/datasets/delete``
- ``/config/check`` (a fit's settings, checked before the client uploads its data)
- ``/models/describe`` (what model names stand for and where their weights would come from)
- ``/fit`` (``train_dataset`` / ``eval_dataset`` ids, or the data as documents)
- ``/runs/status`` ``/runs/logs`` ``/runs/metrics`` ``/runs/list`` ``/runs/cancel`` ``/runs/delete``
  ``/runs/artifact``
- ``/experiments/create`` ``/experiments/list`` ``/experiments/get`` ``/experiments/delete``
"""

import os

from docarray import DocList
from jina import Executor, requests

from finetuner_core.config import FitConfig, check_runtime
from finetuner_core.fit_request import describe_run, fit_config, with_resolved_model
from finetuner_core.in_thread import in_thread
from finetuner_core.models.describe import describe, describe_catalogue
from finetuner_core.parent import stop_with_parent
from finetuner_core.runs.artifact import read_chunk, read_manifest
from finetuner_core.runs.queue import RunQueue
from finetuner_core.storage.lock import WorkspaceLock
from finetuner_core.storage.users import User
from finetuner_core.training.distributed_options import check_processes, for_request, operator_settings
from finetuner_core.workspace import Workspace, workspace_root
from finetuner_protocol import backbones, endpoints
from finetuner_protocol.answers import (
    ArtifactAnswer,
    ConfigChecked,
    DatasetDeleted,
    DatasetList,
    DatasetRecord,
    ExperimentDeleted,
    ExperimentList,
    ExperimentRecord,
    ModelsDescribed,
    RunDeleted,
    RunInfo,
    RunList,
    RunLogs,
    RunMetrics,
    RunRecord,
    answer_docs,
)
from finetuner_protocol.data.checks import check_dataset, check_fit_splits
from finetuner_protocol.data.intake import parse_data, parse_fit_data
from finetuner_protocol.ids import is_run_id
from finetuner_protocol.params import (
    ArtifactParams,
    BeginParams,
    CommitParams,
    DeleteDatasetParams,
    DescribeModelsParams,
    EndpointParams,
    ExperimentParams,
    FitParams,
    ListRunsParams,
    LogsParams,
    RunParams,
    UploadParams,
    WithConfig,
    parse_params,
    request_token,
)
from finetuner_protocol.wire import FinetunerDoc

Docs = DocList[FinetunerDoc]
ADMIN_TOKEN_VARIABLE = "FINETUNER_ADMIN_TOKEN"


class FinetunerTrainer(Executor):
    def __init__(
        self,
        workspace_dir: str = "",
        concurrency: int = 1,
        max_dataset_bytes: int = 10 * 1024**3,
        suspend_timeout_s: float = 120.0,
        model_roots: list[str] | None = None,
        distributed: dict | None = None,
        allow_downloads: bool | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        stop_with_parent()  # no orphan outlives the Flow
        self.lock = WorkspaceLock(workspace_root(workspace_dir))  # one trainer per workspace
        self.home = Workspace(workspace_root(workspace_dir), max_dataset_bytes)
        if os.environ.get(ADMIN_TOKEN_VARIABLE):  # a deployment's first user, from a secret
            self.home.users.ensure("admin", os.environ[ADMIN_TOKEN_VARIABLE], admin=True)
        self.store = self.home.runs
        self.datasets = self.home.datasets
        self.queue = RunQueue(self.store, concurrency=concurrency)
        self.suspend_timeout_s = suspend_timeout_s
        self.model_roots = backbones.model_roots(model_roots)  # folders whose models a request may name
        self.distributed = operator_settings(distributed)  # the rendezvous of runs that span several machines
        self.allow_downloads = allow_downloads  # False: never download a model (None: the environment decides)

    def _user(self, parameters: dict) -> User:
        return self.home.users.authenticate(request_token(parameters))

    def _owner(self, parameters: dict) -> str | None:
        """Whose data a request may see: its user's (an admin's requests see every user's)."""
        user = self._user(parameters)
        return None if user.admin else user.id

    def _run(self, parameters: dict, model: type[RunParams] = RunParams) -> tuple[str, RunParams]:
        """The run a request names (the user's own), and the request's parameters."""
        owner = self._owner(parameters)
        params = parse_params(model, parameters)
        return self.store.require(params.run_id, owner), params

    def _fit_config(self, raw: dict, user: User) -> FitConfig:
        """A fit's configuration as this trainer runs it: models from allowed places, the operator's rendezvous,
        and settings this machine can train with; the model available here."""
        config = fit_config(raw, self.model_roots, self.store, None if user.admin else user.id)
        distributed = for_request(config.distributed, self.distributed)
        check_processes(distributed, config.device)
        check_runtime(config)
        config = with_resolved_model(config, **self._resolving())
        return config.model_copy(update={"distributed": distributed})

    def _resolving(self) -> dict:
        """How this trainer resolves a model a request names: the workspace's model store, under its model roots,
        downloads as allowed."""
        return {"roots": self.model_roots, "allow_download": self.allow_downloads, "store": self.home.models}

    @requests(on=endpoints.DATASETS_BEGIN)
    @in_thread
    def begin_dataset(self, docs: Docs, parameters: dict, **kwargs) -> Docs:
        user = self._user(parameters)
        plan = parse_params(BeginParams, parameters).dataset
        return answer_docs(DatasetRecord, self.datasets.begin(user.id, plan.name, plan.upload_key, plan.batches))

    @requests(on=endpoints.DATASETS_UPLOAD)
    @in_thread
    def upload_dataset(self, docs: Docs, parameters: dict, **kwargs) -> Docs:
        """One batch of a dataset (the validator has checked its rows)."""
        user = self._user(parameters)
        params = parse_params(UploadParams, parameters)
        config, batch = self._fit_config(params.config, user), params.dataset
        records = parse_data(docs, config.modality, config.csv_options, whole=False)["train"]
        stored = self.datasets.put_batch(batch.id, user.id, batch.index, records, batch.items, batch.sha256)
        return answer_docs(DatasetRecord, stored)

    @requests(on=endpoints.DATASETS_COMMIT)
    @in_thread
    def commit_dataset(self, docs: Docs, parameters: dict, **kwargs) -> Docs:
        user = self._user(parameters)
        dataset_id = parse_params(CommitParams, parameters).dataset.id
        return answer_docs(
            DatasetRecord, self.datasets.commit(dataset_id, user.id, lambda records: check_dataset(records))
        )

    @requests(on=endpoints.DATASETS_LIST)
    @in_thread
    def list_datasets(self, docs: Docs, parameters: dict, **kwargs) -> Docs:
        user = self._user(parameters)
        parse_params(EndpointParams, parameters)
        return answer_docs(DatasetList, {"datasets": self.datasets.list(user.id)})

    @requests(on=endpoints.DATASETS_DELETE)
    @in_thread
    def delete_dataset(self, docs: Docs, parameters: dict, **kwargs) -> Docs:
        user = self._user(parameters)
        dataset_id = parse_params(DeleteDatasetParams, parameters).dataset_id
        self.datasets.delete(dataset_id, user.id)
        return answer_docs(DatasetDeleted, {"dataset_id": dataset_id, "deleted": True})

    @requests(on=endpoints.CONFIG_CHECK)
    @in_thread
    def check_config(self, docs: Docs, parameters: dict, **kwargs) -> Docs:
        """A fit's settings checked as ``/fit`` checks them, before the client sends any data."""
        user = self._user(parameters)
        config = self._fit_config(parse_params(WithConfig, parameters).config, user)
        return answer_docs(ConfigChecked, {"config": config.model_dump(mode="json", exclude={"distributed"})})

    @requests(on=endpoints.MODELS_DESCRIBE)
    @in_thread
    def describe_models(self, docs: Docs, parameters: dict, **kwargs) -> Docs:
        """The named models (or the whole catalogue): what each is and where its weights would come from."""
        user = self._user(parameters)
        params = parse_params(DescribeModelsParams, parameters)
        if params.names is None:
            return answer_docs(ModelsDescribed, {"models": describe_catalogue(**self._resolving())})
        owner = None if user.admin else user.id
        rows = [
            describe_run(name, self.store, owner)
            if is_run_id(name)
            else describe(name, params.model_options, **self._resolving())
            for name in params.names
        ]
        return answer_docs(ModelsDescribed, {"models": rows})

    @requests(on=endpoints.FIT)
    @in_thread
    def fit(self, docs: Docs, parameters: dict, **kwargs) -> Docs:
        user = self._user(parameters)
        params = parse_params(FitParams, parameters)
        config = self._fit_config(params.config, user)
        if len(docs):
            splits = parse_fit_data(docs, config)
        else:
            splits = self._dataset_splits(params, user)
            check_fit_splits(splits, config)
        experiment = params.experiment or "default"
        run_id = self.store.create(config, splits["train"], splits.get("eval", []), user.id, experiment)
        self.queue.submit(run_id)
        return answer_docs(RunRecord, self.store.status(run_id))

    def _dataset_splits(self, params: FitParams, user: User) -> dict[str, list]:
        if not params.train_dataset:
            raise ValueError("a fit needs training data: documents, or train_dataset (a dataset id)")
        splits = {"train": self.datasets.records(params.train_dataset, user.id)}
        if params.eval_dataset:
            splits["eval"] = self.datasets.records(params.eval_dataset, user.id)
        return splits

    @requests(on=endpoints.RUNS_STATUS)
    @in_thread
    def status(self, docs: Docs, parameters: dict, **kwargs) -> Docs:
        run_id, _ = self._run(parameters)
        config = self.store.config(run_id).model_dump(mode="json")
        return answer_docs(RunInfo, {**self.store.status(run_id), "config": config})

    @requests(on=endpoints.RUNS_LOGS)
    @in_thread
    def logs(self, docs: Docs, parameters: dict, **kwargs) -> Docs:
        run_id, params = self._run(parameters, LogsParams)
        entries = self.store.logs(run_id, since=params.since)
        return answer_docs(RunLogs, {"logs": entries, **self.store.status(run_id)})

    @requests(on=endpoints.RUNS_METRICS)
    @in_thread
    def metrics(self, docs: Docs, parameters: dict, **kwargs) -> Docs:
        run_id, _ = self._run(parameters)
        return answer_docs(RunMetrics, self.store.metrics(run_id))

    @requests(on=endpoints.RUNS_LIST)
    @in_thread
    def list_runs(self, docs: Docs, parameters: dict, **kwargs) -> Docs:
        owner = self._owner(parameters)
        params = parse_params(ListRunsParams, parameters)
        filters = {"experiment": params.experiment, "status": params.status}
        runs = self.store.list(owner, offset=params.offset, limit=params.limit, **filters)
        return answer_docs(
            RunList, {"runs": runs, "total": self.store.count(owner, **filters), "offset": params.offset}
        )

    @requests(on=endpoints.RUNS_CANCEL)
    @in_thread
    def cancel(self, docs: Docs, parameters: dict, **kwargs) -> Docs:
        run_id, _ = self._run(parameters)
        self.queue.cancel(run_id)
        return answer_docs(RunRecord, self.store.status(run_id))

    @requests(on=endpoints.RUNS_DELETE)
    @in_thread
    def delete(self, docs: Docs, parameters: dict, **kwargs) -> Docs:
        run_id, _ = self._run(parameters)
        self.store.delete(run_id)
        return answer_docs(RunDeleted, {"run_id": run_id, "deleted": True})

    @requests(on=endpoints.RUNS_ARTIFACT)
    @in_thread
    def artifact(self, docs: Docs, parameters: dict, **kwargs) -> Docs:
        """Without ``path``: the manifest. With ``path`` and ``offset``: one chunk of the file in ``blob``."""
        run_id, params = self._run(parameters, ArtifactParams)
        artifact_dir = self.store.artifact_dir(run_id)
        if params.path is None:
            return answer_docs(ArtifactAnswer, {"files": read_manifest(artifact_dir)})
        chunk = read_chunk(artifact_dir, params.path, params.offset)
        return answer_docs(
            ArtifactAnswer, {"path": params.path, "offset": params.offset, "length": len(chunk)}, blob=chunk
        )

    @requests(on=endpoints.EXPERIMENTS_CREATE)
    @in_thread
    def create_experiment(self, docs: Docs, parameters: dict, **kwargs) -> Docs:
        user = self._user(parameters)
        name = parse_params(ExperimentParams, parameters).name
        return answer_docs(ExperimentRecord, self.store.create_experiment(user.id, name))

    @requests(on=endpoints.EXPERIMENTS_GET)
    @in_thread
    def get_experiment(self, docs: Docs, parameters: dict, **kwargs) -> Docs:
        user = self._user(parameters)
        name = parse_params(ExperimentParams, parameters).name
        return answer_docs(ExperimentRecord, self.store.experiment(user.id, name))

    @requests(on=endpoints.EXPERIMENTS_LIST)
    @in_thread
    def list_experiments(self, docs: Docs, parameters: dict, **kwargs) -> Docs:
        user = self._user(parameters)
        parse_params(EndpointParams, parameters)
        return answer_docs(ExperimentList, {"experiments": self.store.list_experiments(user.id)})

    @requests(on=endpoints.EXPERIMENTS_DELETE)
    @in_thread
    def delete_experiment(self, docs: Docs, parameters: dict, **kwargs) -> Docs:
        user = self._user(parameters)
        name = parse_params(ExperimentParams, parameters).name
        self.store.delete_experiment(user.id, name)
        return answer_docs(ExperimentDeleted, {"name": name, "deleted": True})

    @requests
    async def passthrough(self, docs: Docs, **kwargs) -> Docs:
        return docs

    def close(self) -> None:
        """On shutdown (SIGTERM included): runs in progress checkpoint and stop, and stay QUEUED, so the next
        trainer on this workspace resumes them."""
        self.queue.close(timeout=self.suspend_timeout_s, suspend=True)
        self.lock.release()
        super().close()
