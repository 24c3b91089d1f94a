"""Retrieval evaluation of embedding models: encode, check, index, retrieve, judge, measure.

Every evaluation takes the same steps, whatever defines relevance (labels, pairs, grades) and whatever the
models are (one model, or a query model and an index model such as a CLIP model's text and vision towers):

1. encode the queries with the query model and the index items with the index model;
2. check the input: non-empty sets, every k within what a query can retrieve, finite embeddings of one size;
3. build the index (exact Flat by default) and retrieve each query's top results, its own item left out;
4. judge the results against the relevance and compute every metric of :mod:`.metrics`;
5. report the queries without any relevant item (left out of the means, counted, named in a warning) and
   show a few sample queries with their top results.

Results tied in score are ranked by index position (lower first), so every figure is deterministic.
A run's metrics (before training, at evaluation steps, after) come from :func:`evaluate_labeled` and
:func:`finetuner_core.evaluation.pairs.evaluate_pairs`, which are these same steps.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import numpy as np

from finetuner_core.evaluation.checks import (
    check_dimensions,
    check_embeddings,
    check_ks,
    check_not_empty,
    normalise_ks,
)
from finetuner_core.evaluation.dataset import EvalSet, labeled_set, records_set
from finetuner_core.evaluation.errors import EvaluationError
from finetuner_core.evaluation.examples import Ranking, describers, display_examples, example_positions
from finetuner_core.evaluation.index import FlatIndex, Index, build_index, neighbour_recall
from finetuner_core.evaluation.metrics import Judgements, metric_table
from finetuner_core.evaluation.options import EvaluationOptions, parse_evaluation_options
from finetuner_core.evaluation.relevance import LabelRelevance, Relevance
from finetuner_core.evaluation.retrieve import retrieve
from finetuner_protocol.metrics import DEFAULT_KS


class Encoder(Protocol):
    def encode(self, inputs: list[Any]) -> np.ndarray:
        """Embeddings of ``inputs``.  # (n, dim) float32"""
        ...


@dataclass
class Evaluation:
    """The metric table, sample queries with their top results, and warnings about the data; ``ranking``: every
    query's results, to compare with another model's (evaluation.examples.changed_examples)."""

    metrics: dict[str, float]
    examples: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    relevance: str = "label"
    ranking: Ranking | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {key: value for key, value in asdict(self).items() if key != "ranking"}


def evaluate(
    eval_set: EvalSet,
    model: Encoder,
    ks: tuple[int, ...] = DEFAULT_KS,
    index_model: Encoder | None = None,
    options: EvaluationOptions | dict | None = None,
) -> Evaluation:
    """Evaluate ``model`` (and ``index_model`` for the index, when given) on ``eval_set``."""
    ks = normalise_ks(ks)
    index_inputs = eval_set.index_inputs
    check_not_empty(len(eval_set.queries), len(index_inputs))
    check_ks(ks, len(index_inputs), bool((eval_set.own >= 0).any()))
    queries = _encode(model, eval_set.queries, "query", eval_set.query_name)
    if eval_set.same_set and index_model is None:
        index = queries
    else:
        index = _encode(index_model or model, index_inputs, "index", eval_set.index_name)
    return evaluate_embeddings(queries, index, eval_set.relevance, ks, options, eval_set)


def evaluate_embeddings(
    queries: np.ndarray,
    index: np.ndarray,
    relevance: Relevance,
    ks: tuple[int, ...] = DEFAULT_KS,
    options: EvaluationOptions | dict | None = None,
    eval_set: EvalSet | None = None,
) -> Evaluation:
    """Search ``index`` with ``queries`` and measure the results against ``relevance``.  # (q, dim), (n, dim)"""
    options, ks = parse_evaluation_options(options), normalise_ks(ks)
    query_name = eval_set.query_name if eval_set else (lambda i: f"query {i}")
    index_name = eval_set.index_name if eval_set else (lambda i: f"item {i}")
    queries, index = _checked(queries, index, relevance, ks, query_name, index_name)
    search_index = build_index(options.index, index, options.metric, **options.index_options)
    candidates = len(index) - int((relevance.own >= 0).any())
    depth = _depth(ks, relevance, candidates, options.max_depth)
    scores, ids = retrieve(search_index, queries, depth, relevance.own, options.batch_size)
    judgements = relevance.judge(ids)
    if not (judgements.num_relevant > 0).any():
        raise EvaluationError(
            f"none of the {len(queries)} queries has a relevant item in the index: check the labels or pairs"
        )
    metrics = metric_table(judgements, ks)
    if options.index != "flat" and options.exact_check:
        metrics[f"index_recall@{max(ks)}"] = _index_recall(search_index, queries, index, relevance, ks, options)
    positions, shown = example_positions(len(queries), options.examples), min(options.example_k, depth)
    inputs = (eval_set.queries, eval_set.index_inputs) if eval_set else (None, None)
    examples = display_examples(positions, scores, ids, judgements, shown, *describers(*inputs, query_name, index_name))
    detailed = describers(*inputs, query_name, index_name, relevance, options.thumbnail_px)
    ranking = Ranking(ids, scores, judgements.gains, judgements.num_relevant, *detailed, options.examples, shown)
    return Evaluation(metrics, examples, _warnings(judgements, query_name), relevance.kind, ranking)


def _checked(queries, index, relevance: Relevance, ks, query_name, index_name) -> tuple[np.ndarray, np.ndarray]:
    """The embeddings as float32 once every check has passed.  # (q, dim), (n, dim)"""
    check_not_empty(len(queries), len(index))
    queries = check_embeddings(queries, relevance.num_queries, "query", query_name)
    index = check_embeddings(index, relevance.num_index, "index", index_name)
    check_dimensions(queries.shape[1], index.shape[1])
    check_ks(ks, len(index), bool((relevance.own >= 0).any()))
    return queries, index


def evaluate_models(
    eval_set: EvalSet,
    models: dict[str, tuple[Encoder, Encoder | None]],
    ks: tuple[int, ...] = DEFAULT_KS,
    options: EvaluationOptions | dict | None = None,
) -> dict[str, Evaluation]:
    """Several models side by side on the same data: ``{name: (model, index_model or None)}``."""
    return {name: evaluate(eval_set, model, ks, index_model, options) for name, (model, index_model) in models.items()}


def evaluate_labeled(model: Encoder, records: list[Any], ks: tuple[int, ...] = DEFAULT_KS) -> dict:
    """Leave-one-out retrieval by label: every record is a query against all the others."""
    return evaluate(labeled_set(records), model, ks).metrics


def check_eval_records(records: list[Any], ks: tuple[int, ...] = DEFAULT_KS) -> None:
    """Refuse evaluation records that cannot be scored at every k, before a run is stored and a model loaded."""
    eval_set = records_set(records)
    check_not_empty(len(eval_set.queries), len(eval_set.index_inputs))
    check_ks(normalise_ks(ks), len(eval_set.index_inputs), bool((eval_set.own >= 0).any()))


def label_retrieval_metrics(embeddings: np.ndarray, labels: list[str], ks: tuple[int, ...] = DEFAULT_KS) -> dict:
    """Metrics for each item as a query against every other item, by label.  # embeddings: (n, dim)"""
    if len(embeddings) != len(labels):
        raise EvaluationError(f"{len(embeddings)} embeddings but {len(labels)} labels")
    relevance = LabelRelevance(labels, labels, own=np.arange(len(labels)))
    return evaluate_embeddings(embeddings, embeddings, relevance, ks).metrics


def _encode(model: Encoder, inputs: list[Any], what: str, name) -> np.ndarray:
    return check_embeddings(model.encode(list(inputs)), len(inputs), what, name)


def _depth(ks: tuple[int, ...], relevance: Relevance, candidates: int, max_depth: int) -> int:
    """Deep enough for every k and, up to ``max_depth``, for R-precision."""
    most_relevant = int(relevance.num_relevant().max(initial=0))
    return min(candidates, max(max(ks), min(most_relevant, max_depth)))


def _index_recall(
    search_index: Index,
    queries: np.ndarray,
    index: np.ndarray,
    relevance: Relevance,
    ks: tuple[int, ...],
    options: EvaluationOptions,
) -> float:
    """k-recall@k of the approximate index against exact search, on evenly spread sample queries."""
    sample = example_positions(len(queries), options.exact_check)
    own = relevance.own[sample]
    exact = FlatIndex(index, options.metric, use_gpu=search_index.use_gpu and search_index.gpu_capable)
    _, exact_ids = retrieve(exact, queries[sample], max(ks), own, options.batch_size)
    _, ids = retrieve(search_index, queries[sample], max(ks), own, options.batch_size)
    return neighbour_recall(ids, exact_ids)


def _warnings(judgements: Judgements, query_name) -> list[str]:
    without = np.flatnonzero(judgements.num_relevant == 0)
    if not len(without):
        return []
    names = ", ".join(query_name(int(q)) for q in without[:5]) + (", ..." if len(without) > 5 else "")
    return [
        f"{len(without)} of {len(judgements.num_relevant)} queries have no relevant item in the index and are "
        f"left out of the means (queries_without_relevant): {names}"
    ]
