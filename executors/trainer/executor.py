"""Trainer: holds users' datasets and runs, and trains in the background.

Every endpoint needs a valid token (``parameters["token"]``); a user sees only its own datasets and runs
(another user's id is "not found"). ``/fit`` answers with the run id as soon as the run is stored; a worker
thread then evaluates the base model, trains, evaluates again and saves the artifact. Every answer is one
``result`` document (JSON payload).

- ``/datasets/begin`` ``/datasets/upload`` ``/datasets/commit`` ``/datasets/list`` ``/datasets/delete``
- ``/fit`` (``train_dataset`` / ``eval_dataset`` ids, or the data as documents)
- ``/runs/status`` ``/runs/logs`` ``/runs/metrics`` ``/runs/list`` ``/runs/cancel`` ``/runs/delete``
  ``/runs/artifact``
- ``/experiments/create`` ``/experiments/list`` ``/experiments/get`` ``/experiments/delete``
"""

import os

from docarray import DocList
from jina import Executor, requests

from finetuner_core.config import parse_fit_config
from finetuner_core.data.checks import check_dataset, check_fit_splits
from finetuner_core.data.intake import parse_data, parse_fit_data
from finetuner_core.models.registry import check_available
from finetuner_core.runs import RunQueue
from finetuner_core.runs.artifact import read_chunk, read_manifest
from finetuner_core.storage.users import User
from finetuner_core.storage.workspace import Workspace, workspace_root
from finetuner_core.wire import FinetunerDoc, result_docs

Docs = DocList[FinetunerDoc]
ADMIN_TOKEN_VARIABLE = "FINETUNER_ADMIN_TOKEN"
MAX_PAGE = 500


class FinetunerTrainer(Executor):
    def __init__(
        self,
        workspace_dir: str = "",
        concurrency: int = 1,
        max_dataset_bytes: int = 10 * 1024**3,
        suspend_timeout_s: float = 120.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.home = Workspace(workspace_root(workspace_dir), max_dataset_bytes)
        if os.environ.get(ADMIN_TOKEN_VARIABLE):  # a deployment's first user, from a secret
            self.home.users.ensure("admin", os.environ[ADMIN_TOKEN_VARIABLE], admin=True)
        self.store = self.home.runs
        self.datasets = self.home.datasets
        self.queue = RunQueue(self.store, concurrency=concurrency)
        self.suspend_timeout_s = suspend_timeout_s

    def _user(self, parameters: dict) -> User:
        return self.home.users.authenticate(parameters.get("token"))

    def _owner(self, parameters: dict) -> str | None:
        """Whose data a request may see: its user's (an admin's requests see every user's)."""
        user = self._user(parameters)
        return None if user.admin else user.name

    def _run(self, parameters: dict) -> str:
        return self.store.require(parameters.get("run_id"), self._owner(parameters))

    @requests(on="/datasets/begin")
    def begin_dataset(self, docs: Docs, parameters: dict, **kwargs) -> Docs:
        user = self._user(parameters)
        upload = parameters.get("dataset") or {}
        batches = _integer(upload.get("batches"), "batches")
        dataset = self.datasets.begin(user.name, upload.get("name"), upload.get("upload_key"), batches)
        return result_docs(dataset)

    @requests(on="/datasets/upload")
    def upload_dataset(self, docs: Docs, parameters: dict, **kwargs) -> Docs:
        """One batch of a dataset (the validator has checked its rows)."""
        user = self._user(parameters)
        config = parse_fit_config(parameters.get("config", {}))
        upload = parameters.get("dataset") or {}
        records = parse_data(docs, config.modality, config.csv_options, whole=False)["train"]
        index = _integer(upload.get("index"), "index")
        return result_docs(self.datasets.put_batch(upload.get("id"), user.name, index, records))

    @requests(on="/datasets/commit")
    def commit_dataset(self, docs: Docs, parameters: dict, **kwargs) -> Docs:
        user = self._user(parameters)
        dataset_id = (parameters.get("dataset") or {}).get("id")
        return result_docs(self.datasets.commit(dataset_id, user.name, lambda records: check_dataset(records)))

    @requests(on="/datasets/list")
    def list_datasets(self, docs: Docs, parameters: dict, **kwargs) -> Docs:
        return result_docs({"datasets": self.datasets.list(self._user(parameters).name)})

    @requests(on="/datasets/delete")
    def delete_dataset(self, docs: Docs, parameters: dict, **kwargs) -> Docs:
        dataset_id = parameters.get("dataset_id")
        self.datasets.delete(dataset_id, self._user(parameters).name)
        return result_docs({"dataset_id": dataset_id, "deleted": True})

    @requests(on="/fit")
    def fit(self, docs: Docs, parameters: dict, **kwargs) -> Docs:
        user = self._user(parameters)
        config = parse_fit_config(parameters.get("config", {}))
        check_available(config.model, config.model_options.weights, config.model_options.pretrained)
        if len(docs):
            splits = parse_fit_data(docs, config)
        else:
            splits = self._dataset_splits(parameters, user)
            check_fit_splits(splits, config)
        experiment = parameters.get("experiment") or "default"
        run_id = self.store.create(config, splits["train"], splits.get("eval", []), user.name, experiment)
        self.queue.submit(run_id)
        return result_docs(self.store.status(run_id))

    def _dataset_splits(self, parameters: dict, user: User) -> dict[str, list]:
        if not parameters.get("train_dataset"):
            raise ValueError("a fit needs training data: documents, or train_dataset (a dataset id)")
        splits = {"train": self.datasets.records(parameters["train_dataset"], user.name)}
        if parameters.get("eval_dataset"):
            splits["eval"] = self.datasets.records(parameters["eval_dataset"], user.name)
        return splits

    @requests(on="/runs/status")
    def status(self, docs: Docs, parameters: dict, **kwargs) -> Docs:
        run_id = self._run(parameters)
        config = self.store.config(run_id).model_dump(mode="json")
        return result_docs({**self.store.status(run_id), "config": config})

    @requests(on="/runs/logs")
    def logs(self, docs: Docs, parameters: dict, **kwargs) -> Docs:
        run_id = self._run(parameters)
        entries = self.store.logs(run_id, since=int(parameters.get("since", 0)))
        return result_docs({"logs": entries, **self.store.status(run_id)})

    @requests(on="/runs/metrics")
    def metrics(self, docs: Docs, parameters: dict, **kwargs) -> Docs:
        return result_docs(self.store.metrics(self._run(parameters)))

    @requests(on="/runs/list")
    def list_runs(self, docs: Docs, parameters: dict, **kwargs) -> Docs:
        owner = self._owner(parameters)
        limit = min(int(parameters.get("limit") or 50), MAX_PAGE)
        offset = int(parameters.get("offset") or 0)
        filters = {"experiment": parameters.get("experiment"), "status": parameters.get("status")}
        runs = self.store.list(owner, offset=offset, limit=limit, **filters)
        return result_docs({"runs": runs, "total": self.store.count(owner, **filters), "offset": offset})

    @requests(on="/runs/cancel")
    def cancel(self, docs: Docs, parameters: dict, **kwargs) -> Docs:
        run_id = self._run(parameters)
        self.queue.cancel(run_id)
        return result_docs(self.store.status(run_id))

    @requests(on="/runs/delete")
    def delete(self, docs: Docs, parameters: dict, **kwargs) -> Docs:
        run_id = self._run(parameters)
        self.store.delete(run_id)
        return result_docs({"run_id": run_id, "deleted": True})

    @requests(on="/runs/artifact")
    def artifact(self, docs: Docs, parameters: dict, **kwargs) -> Docs:
        """Without ``path``: the manifest. With ``path`` and ``offset``: one chunk of the file in ``blob``."""
        artifact_dir = self.store.artifact_dir(self._run(parameters))
        if parameters.get("path") is None:
            return result_docs({"files": read_manifest(artifact_dir)})
        offset = int(parameters.get("offset", 0))
        chunk = read_chunk(artifact_dir, parameters["path"], offset)
        return result_docs({"path": parameters["path"], "offset": offset, "length": len(chunk)}, blob=chunk)

    @requests(on="/experiments/create")
    def create_experiment(self, docs: Docs, parameters: dict, **kwargs) -> Docs:
        return result_docs(self.store.create_experiment(self._user(parameters).name, parameters.get("name")))

    @requests(on="/experiments/get")
    def get_experiment(self, docs: Docs, parameters: dict, **kwargs) -> Docs:
        return result_docs(self.store.experiment(self._user(parameters).name, parameters.get("name")))

    @requests(on="/experiments/list")
    def list_experiments(self, docs: Docs, parameters: dict, **kwargs) -> Docs:
        return result_docs({"experiments": self.store.list_experiments(self._user(parameters).name)})

    @requests(on="/experiments/delete")
    def delete_experiment(self, docs: Docs, parameters: dict, **kwargs) -> Docs:
        name = parameters.get("name")
        self.store.delete_experiment(self._user(parameters).name, name)
        return result_docs({"name": name, "deleted": True})

    @requests
    def passthrough(self, docs: Docs, **kwargs) -> Docs:
        return docs

    def close(self) -> None:
        """On shutdown (SIGTERM included): runs in progress checkpoint and stop, and stay QUEUED, so the next
        trainer on this workspace resumes them."""
        self.queue.close(timeout=self.suspend_timeout_s, suspend=True)
        super().close()


def _integer(value, name: str) -> int:
    """An integer parameter (gRPC parameters carry every number as a float)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise ValueError(f"{name} must be an integer, got {value!r}")
