"""Trainer: accepts a fit, stores its data as a run, and trains in the background.

``/fit`` answers with the run id as soon as the data is stored; a worker thread then evaluates the base
model, trains, evaluates again and saves the artifact. The ``/runs/*`` endpoints read a run's state, logs,
metrics and artifact (in chunks), and cancel it. Every answer is one ``result`` document (JSON payload).
"""

from docarray import DocList
from jina import Executor, requests

from finetuner_core.config import parse_fit_config
from finetuner_core.data.intake import parse_fit_data
from finetuner_core.models.registry import check_available
from finetuner_core.runs import RunQueue, RunStore, runs_root
from finetuner_core.runs.artifact import read_chunk, read_manifest
from finetuner_core.wire import FinetunerDoc, result_docs


class FinetunerTrainer(Executor):
    def __init__(self, workspace_dir: str = "", concurrency: int = 1, **kwargs):
        super().__init__(**kwargs)
        self.store = RunStore(runs_root(workspace_dir, "workspace"))
        self.queue = RunQueue(self.store, concurrency=concurrency)

    @requests(on="/fit")
    def fit(self, docs: DocList[FinetunerDoc], parameters: dict, **kwargs) -> DocList[FinetunerDoc]:
        config = parse_fit_config(parameters.get("config", {}))
        check_available(config.model, config.model_options.weights, config.model_options.pretrained)
        data = parse_fit_data(docs, config)
        run_id = self.store.create(config, data["train"], data.get("eval", []))
        self.queue.submit(run_id)
        return result_docs({"run_id": run_id, **self.store.status(run_id)})

    @requests(on="/runs/status")
    def status(self, docs: DocList[FinetunerDoc], parameters: dict, **kwargs) -> DocList[FinetunerDoc]:
        run_id = parameters.get("run_id")
        config = self.store.config(run_id).model_dump(mode="json")
        return result_docs({"run_id": run_id, **self.store.status(run_id), "config": config})

    @requests(on="/runs/logs")
    def logs(self, docs: DocList[FinetunerDoc], parameters: dict, **kwargs) -> DocList[FinetunerDoc]:
        run_id = parameters.get("run_id")
        entries = self.store.logs(run_id, since=int(parameters.get("since", 0)))
        return result_docs({"run_id": run_id, "logs": entries, **self.store.status(run_id)})

    @requests(on="/runs/metrics")
    def metrics(self, docs: DocList[FinetunerDoc], parameters: dict, **kwargs) -> DocList[FinetunerDoc]:
        return result_docs(self.store.metrics(parameters.get("run_id")))

    @requests(on="/runs/list")
    def list_runs(self, docs: DocList[FinetunerDoc], parameters: dict, **kwargs) -> DocList[FinetunerDoc]:
        runs = [{"run_id": run_id, **self.store.status(run_id)} for run_id in self.store.list_ids()]
        return result_docs({"runs": runs})

    @requests(on="/runs/cancel")
    def cancel(self, docs: DocList[FinetunerDoc], parameters: dict, **kwargs) -> DocList[FinetunerDoc]:
        run_id = parameters.get("run_id")
        self.store.path(run_id)
        self.queue.cancel(run_id)
        return result_docs({"run_id": run_id, **self.store.status(run_id)})

    @requests(on="/runs/artifact")
    def artifact(self, docs: DocList[FinetunerDoc], parameters: dict, **kwargs) -> DocList[FinetunerDoc]:
        """Without ``path``: the manifest. With ``path`` and ``offset``: one chunk of the file in ``blob``."""
        artifact_dir = self.store.artifact_dir(parameters.get("run_id"))
        if parameters.get("path") is None:
            return result_docs({"files": read_manifest(artifact_dir)})
        offset = int(parameters.get("offset", 0))
        chunk = read_chunk(artifact_dir, parameters["path"], offset)
        return result_docs({"path": parameters["path"], "offset": offset, "length": len(chunk)}, blob=chunk)

    @requests
    def passthrough(self, docs: DocList[FinetunerDoc], **kwargs) -> DocList[FinetunerDoc]:
        return docs

    def close(self) -> None:
        self.queue.close(timeout=1)
        super().close()
