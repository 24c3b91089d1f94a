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

``/search`` answers the top k of each query over an index (the ``role="index"`` items or a stored dataset): with
``shards: N`` on the evaluator every shard answers for its slice of the index, and the evaluator set as the shards'
``uses_after`` (see flows/gpu.yml) merges their answers into the exact global top k, or fails the search naming
the shard that did not answer: a part of the index is never answered as if it were the whole.
"""

import json
import threading
from functools import partial
from typing import Any

from docarray import DocList
from jina import Executor, requests

from finetuner_core.config import FitConfig
from finetuner_core.evaluation.dataset import EvalSet, records_set
from finetuner_core.evaluation.endpoint import ModelRef, ModelSpec, answer, check_model_sources, model_specs
from finetuner_core.evaluation.errors import EvaluationError
from finetuner_core.evaluation.evaluate import evaluate_models
from finetuner_core.evaluation.options import parse_evaluation_options
from finetuner_core.evaluation.request import eval_set_from_docs, is_retrieval_request
from finetuner_core.evaluation.search import (
    IndexItems,
    SliceCache,
    docs_index,
    parse_search_options,
    query_docs,
    records_index,
    search_result,
    search_shard,
    shard_payloads,
)
from finetuner_core.fit_request import fit_config
from finetuner_core.in_thread import in_thread
from finetuner_core.models import build_model, load_model
from finetuner_core.models.base import CONFIG_FILE
from finetuner_core.parent import stop_with_parent
from finetuner_core.workspace import Workspace, workspace_root
from finetuner_protocol import backbones, endpoints
from finetuner_protocol.answers import EvaluateAnswer, SearchAnswer, ShardSearchAnswer, answer_docs
from finetuner_protocol.data.intake import parse_data
from finetuner_protocol.params import EvaluateParams, SearchParams, parse_params, request_token
from finetuner_protocol.wire import FinetunerDoc


class FinetunerEvaluator(Executor):
    def __init__(self, workspace_dir: str = "", device: str = "auto", model_roots: list[str] | None = None, **kwargs):
        super().__init__(**kwargs)
        stop_with_parent()  # no orphan outlives the Flow
        self.home = Workspace(workspace_root(workspace_dir))
        self.store = self.home.runs
        self.device = device
        self.slices = SliceCache()  # this shard's slices of stored datasets, encoded
        self.slices_lock = threading.Lock()  # searches run side by side (in threads); the cache is shared
        self.model_roots = backbones.model_roots(model_roots)  # folders whose models a request may name

    @requests(on=endpoints.EVALUATE)
    @in_thread
    def evaluate(self, docs: DocList[FinetunerDoc], parameters: dict, **kwargs) -> DocList[FinetunerDoc]:
        _, params, config, specs = self._models_request(parameters, EvaluateParams)
        options = parse_evaluation_options(params.evaluation)
        loaded: dict[str, object] = {}
        models = {spec.name: (self._load(spec.query, loaded), self._index_model(spec, loaded)) for spec in specs}
        eval_set = self._eval_set(docs, config, specs[0], models[specs[0].name][0])
        evaluations = evaluate_models(eval_set, models, tuple(config.eval_ks), options)
        return answer_docs(EvaluateAnswer, answer(eval_set, evaluations))

    @requests(on=endpoints.SEARCH)
    @in_thread
    def search(self, docs: DocList[FinetunerDoc], parameters: dict, **kwargs) -> DocList[FinetunerDoc]:
        if self._merges_shards(docs):
            payloads = shard_payloads([json.loads(doc.payload) for doc in docs if doc.kind == "result"])
            k = parse_search_options(parse_params(SearchParams, parameters).search).k
            return answer_docs(SearchAnswer, search_result(payloads, k))
        owner, params, config, specs = self._models_request(parameters, SearchParams)
        options = parse_search_options(params.search)
        if len(specs) != 1:
            raise EvaluationError("a search uses one model (or one query_model and index_model), not a list")
        loaded: dict[str, object] = {}
        query_model = self._load(specs[0].query, loaded)
        index_model = self._index_model(specs[0], loaded) or query_model
        index = self._search_index(docs, options.dataset_id, owner)
        shard, shards = getattr(self.runtime_args, "shard_id", 0) or 0, getattr(self.runtime_args, "shards", 1) or 1
        encoders = query_model.encode, index_model.encode
        cache = (self.slices, specs[0].model_dump_json())
        with self.slices_lock:
            answer = search_shard(query_docs(docs)[0], index, *encoders, options, shard, shards, *cache)
        # one shard answers the whole search; shards answer their part, merged by their uses_after
        if shards == 1:
            return answer_docs(SearchAnswer, search_result([answer], options.k))
        return answer_docs(ShardSearchAnswer, answer)

    def _models_request(self, parameters: dict, kind: type) -> tuple[str | None, Any, FitConfig, list[ModelSpec]]:
        """A request's owner (None: an admin's), parameters, fit settings and models, each model one it may use:
        a registered one, one under the operator's roots, or its own run's."""
        user = self.home.users.authenticate(request_token(parameters))
        owner = None if user.admin else user.id
        params = parse_params(kind, parameters)
        config = fit_config(params.config, self.model_roots)
        specs = model_specs(params.model_dump(), config.model, config.model_options.model_dump(mode="json"))
        check_model_sources(specs, self.model_roots)
        for spec in specs:
            for ref in (spec.query, spec.index):
                if ref is not None and ref.run_id:
                    self.store.require(ref.run_id, owner)
        return owner, params, config, specs

    def _merges_shards(self, docs) -> bool:
        """Whether this evaluator is the ``uses_after`` of sharded evaluators (it receives their answers)."""
        name = str(getattr(self.runtime_args, "name", "") or "")
        return "uses_after" in name or any(doc.kind == "result" for doc in docs)

    def _search_index(self, docs, dataset_id: str | None, owner: str | None) -> IndexItems:
        """The index of a search: a stored dataset (read only when this shard's slice is not kept), or the
        request's ``role="index"`` items."""
        if not dataset_id:
            return docs_index(docs)
        items = self.home.datasets.describe(dataset_id, owner)["items"]
        return records_index(dataset_id, items, partial(self.home.datasets.records, dataset_id, owner))

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
                loaded[key] = build_model(ref.model, ref.model_options, self.device, store=self.home.models)
        return loaded[key]

    def _artifact(self, run_id: str):
        folder = self.store.artifact_dir(run_id)
        if not (folder / CONFIG_FILE).exists():
            status = self.store.status(run_id).get("status")
            raise EvaluationError(f"run {run_id} has no saved model to evaluate (status {status})")
        return folder

    @requests
    async def passthrough(self, docs: DocList[FinetunerDoc], **kwargs) -> DocList[FinetunerDoc]:
        return docs
