"""Retrieval evaluation: a FAISS index wrapper, metric maths, and label-relevance evaluation."""

from finetuner_core.evaluation.evaluate import DEFAULT_KS, evaluate_labeled, label_retrieval_metrics
from finetuner_core.evaluation.index import FlatIndex
from finetuner_core.evaluation.metrics import METRICS, retrieval_metrics

__all__ = [
    "DEFAULT_KS",
    "METRICS",
    "FlatIndex",
    "evaluate_labeled",
    "label_retrieval_metrics",
    "retrieval_metrics",
]
