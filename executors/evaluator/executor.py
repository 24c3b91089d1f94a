"""Evaluator: FAISS retrieval metrics for any model on evaluation data.

``/evaluate`` takes validated items (``split="eval"``; labeled items, or text-image pairs for a CLIP model) and
``parameters``: ``config`` (a fit configuration: ``model``, ``model_options``, ``eval_ks``) or ``run_id`` (a
finished run's artifact, from the runs folder shared with the trainer). It answers with the metric table.
Runs use the same code for their before/after metrics.
"""

from docarray import DocList
from jina import Executor, requests

from finetuner_core.config import parse_fit_config
from finetuner_core.data.intake import parse_data
from finetuner_core.data.records import PairItem
from finetuner_core.evaluation.evaluate import evaluate_labeled
from finetuner_core.evaluation.pairs import evaluate_pairs
from finetuner_core.models import build_model, load_model
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
        if parameters.get("run_id"):
            model = load_model(self.store.artifact_dir(parameters["run_id"]), self.device)
        else:
            model = build_model(config.model, config.model_options, self.device)
        records = parse_data(docs, model.modality, config.csv_options, 1, required=("eval",))["eval"]
        evaluate = evaluate_pairs if isinstance(records[0], PairItem) else evaluate_labeled
        metrics = evaluate(model, records, tuple(config.eval_ks))
        return result_docs({"metrics": metrics, "items": len(records)})

    @requests
    def passthrough(self, docs: DocList[FinetunerDoc], **kwargs) -> DocList[FinetunerDoc]:
        return docs
