"""Evaluator: FAISS retrieval metrics for any model on labeled evaluation data.

``/evaluate`` takes validated items (``split="eval"``) and ``parameters``: ``model`` (a registered backbone or
a local folder) or ``run_id`` (a finished run's artifact, from the workspace shared with the trainer), plus
``config.eval_ks``. It answers with the metric table. Runs use the same code for their before/after metrics.
"""

from docarray import DocList
from jina import Executor, requests

from finetuner_core.config import parse_fit_config
from finetuner_core.data.records import LabeledText
from finetuner_core.evaluation.evaluate import evaluate_labeled
from finetuner_core.models.text import TextEmbeddingModel
from finetuner_core.runs import RunStore, runs_root
from finetuner_core.wire import FinetunerDoc, result_docs


class FinetunerEvaluator(Executor):
    def __init__(self, workspace_dir: str = "", device: str = "auto", **kwargs):
        super().__init__(**kwargs)
        self.store = RunStore(runs_root(workspace_dir, "workspace"))
        self.device = device

    @requests(on="/evaluate")
    def evaluate(self, docs: DocList[FinetunerDoc], parameters: dict, **kwargs) -> DocList[FinetunerDoc]:
        config = parse_fit_config(parameters.get("config", {}))
        records = [LabeledText(doc.text, doc.finetuner_label) for doc in docs if doc.kind == "item"]
        model = TextEmbeddingModel.load(self._model_path(parameters, config.model), self.device)
        metrics = evaluate_labeled(model, records, tuple(config.eval_ks))
        return result_docs({"metrics": metrics, "items": len(records)})

    def _model_path(self, parameters: dict, default: str) -> str:
        if parameters.get("run_id"):
            return str(self.store.artifact_dir(parameters["run_id"]))
        return parameters.get("model") or default

    @requests
    def passthrough(self, docs: DocList[FinetunerDoc], **kwargs) -> DocList[FinetunerDoc]:
        return docs
