"""Retrieval evaluation: FAISS indexes, relevance (labels, pairs, grades), metrics, and the evaluation steps."""

from finetuner_core.evaluation.dataset import EvalSet, labeled_set, paired_set, pairs_set, records_set
from finetuner_core.evaluation.errors import EvaluationError
from finetuner_core.evaluation.evaluate import (
    DEFAULT_KS,
    Evaluation,
    check_eval_records,
    evaluate,
    evaluate_embeddings,
    evaluate_labeled,
    evaluate_models,
    label_retrieval_metrics,
)
from finetuner_core.evaluation.index import INDEXES, FlatIndex, HNSWIndex, IVFIndex, build_index
from finetuner_core.evaluation.metrics import METRICS, RANK_METRICS, Judgements, metric_table, retrieval_metrics
from finetuner_core.evaluation.options import EvaluationOptions, parse_evaluation_options
from finetuner_core.evaluation.pairs import evaluate_pairs
from finetuner_core.evaluation.relevance import LabelRelevance, PairRelevance

__all__ = [
    "DEFAULT_KS",
    "INDEXES",
    "METRICS",
    "RANK_METRICS",
    "EvalSet",
    "Evaluation",
    "EvaluationError",
    "EvaluationOptions",
    "FlatIndex",
    "HNSWIndex",
    "IVFIndex",
    "Judgements",
    "LabelRelevance",
    "PairRelevance",
    "build_index",
    "check_eval_records",
    "evaluate",
    "evaluate_embeddings",
    "evaluate_labeled",
    "evaluate_models",
    "evaluate_pairs",
    "label_retrieval_metrics",
    "labeled_set",
    "metric_table",
    "paired_set",
    "pairs_set",
    "parse_evaluation_options",
    "records_set",
    "retrieval_metrics",
]
