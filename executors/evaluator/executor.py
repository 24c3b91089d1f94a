"""Evaluator: FAISS retrieval metrics for any model on any evaluation data.

``/evaluate`` takes the validated evaluation documents and ``parameters``:

- data: labeled items (every item a query against all the others), text-image pairs (each caption against
  every image), or items with ``role`` ("query" / "index") and ``finetuner_label`` or a ``kind="relevance"``
  document of (query, item[, grade]) pairs: see ``finetuner_core.evaluation.request``;
- models: ``config.model`` / ``config.model_options``, ``run_id``, ``query_model`` + ``index_model``, or a list
  ``models`` scored side by side: see ``finetuner_core.evaluation.endpoint``;
- ``config.eval_ks`` and ``evaluation`` (metric, index ``flat`` / ``ivf`` / ``hnsw`` and its options, number of
  sample queries shown): see ``finetuner_core.evaluation.options``.

It answers with the metric table, sample queries with their top results, and warnings (e.g. queries that have
no relevant item). Runs use the same code for their before/after metrics.
"""

from docarray import DocList
from jina import Executor, requests

from finetuner_core.config import FitConfig, parse_fit_config
from finetuner_core.data.intake import parse_data
from finetuner_core.evaluation.dataset import EvalSet, records_set
from finetuner_core.evaluation.endpoint import ModelRef, ModelSpec, answer, model_specs
from finetuner_core.evaluation.errors import EvaluationError
from finetuner_core.evaluation.evaluate import evaluate_models
from finetuner_core.evaluation.options import parse_evaluation_options
from finetuner_core.evaluation.request import eval_set_from_docs, is_retrieval_request
from finetuner_core.models import build_model, load_model
from finetuner_core.models.base import CONFIG_FILE
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
        options = parse_evaluation_options(parameters.get("evaluation"))
        specs = model_specs(parameters, config.model, config.model_options.model_dump(mode="json"))
        loaded: dict[str, object] = {}
        models = {spec.name: (self._load(spec.query, loaded), self._index_model(spec, loaded)) for spec in specs}
        eval_set = self._eval_set(docs, config, specs[0], models[specs[0].name][0])
        evaluations = evaluate_models(eval_set, models, tuple(config.eval_ks), options)
        return result_docs(answer(eval_set, evaluations))

    def _eval_set(self, docs, config: FitConfig, spec: ModelSpec, model) -> EvalSet:
        if is_retrieval_request(docs):
            return eval_set_from_docs(docs)
        modality = "text-image" if spec.index is not None else model.modality
        records = parse_data(docs, modality, config.csv_options, 1, required=("eval",))["eval"]
        return records_set(records)

    def _index_model(self, spec: ModelSpec, loaded: dict):
        return None if spec.index is None else self._load(spec.index, loaded)

    def _load(self, ref: ModelRef, loaded: dict):
        """Each model once per request: a run's artifact, or a backbone / folder built with its options."""
        key = ref.model_dump_json()
        if key not in loaded:
            if ref.run_id:
                loaded[key] = load_model(self._artifact(ref.run_id), self.device)
            else:
                loaded[key] = build_model(ref.model, ref.model_options, self.device)
        return loaded[key]

    def _artifact(self, run_id: str):
        folder = self.store.artifact_dir(run_id)
        if not (folder / CONFIG_FILE).exists():
            status = self.store.status(run_id).get("status")
            raise EvaluationError(f"run {run_id} has no saved model to evaluate (status {status})")
        return folder

    @requests
    def passthrough(self, docs: DocList[FinetunerDoc], **kwargs) -> DocList[FinetunerDoc]:
        return docs
