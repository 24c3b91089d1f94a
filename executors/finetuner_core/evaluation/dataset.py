"""Evaluation data: the query inputs, the index inputs, and the relevance between them.

Builders for each way relevance is defined:

- :func:`labeled_set`: labeled items; same label = relevant. One set (every item a query against all the
  others, itself left out), or queries against a separate index (e.g. labeled texts against labeled images).
- :func:`pairs_set`: queries and index items with (query, item[, grade]) pairs, e.g. a query-document CSV;
  grades other than 1 make graded relevance.
- :func:`paired_set`: cross-modal pairs (text, image): each distinct text is a query against every image, and
  the images it was paired with are relevant.

Inputs are whatever the models take (texts, images, vectors); this module never looks inside them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from finetuner_core.evaluation.errors import EvaluationError
from finetuner_core.evaluation.relevance import LabelRelevance, PairRelevance, Relevance
from finetuner_protocol.data.records import LABELED, QUERY_DOC, TEXT_IMAGE, QueryDocItem
from finetuner_protocol.metrics import CORRELATIONS
from finetuner_protocol.shapes import SHAPES


def record_input(record: Any) -> Any:
    """The model input of a labeled record: the one place that knows where a record keeps it."""
    return record.content


def pair_inputs(item: Any) -> tuple[Any, Any]:
    """The (text, image) of a cross-modal pair record."""
    return item.text, item.image


@dataclass
class EvalSet:
    """Queries, index items (``index=None``: the queries are the index) and their relevance.

    ``query_names`` / ``index_names`` name items in messages and examples (default: ``query 3``, ``item 7``).
    """

    queries: list[Any]
    index: list[Any] | None
    relevance: Relevance
    query_names: list[str] | None = None
    index_names: list[str] | None = None

    @property
    def same_set(self) -> bool:
        return self.index is None

    @property
    def index_inputs(self) -> list[Any]:
        return self.queries if self.index is None else self.index

    @property
    def own(self) -> np.ndarray:
        """Index position of each query's own item, -1 where the query is not in the index.  # (q,)"""
        return self.relevance.own

    def query_name(self, position: int) -> str:
        return self.query_names[position] if self.query_names else f"query {position}"

    def index_name(self, position: int) -> str:
        if self.index_names:
            return self.index_names[position]
        return self.query_name(position) if self.same_set else f"item {position}"


def labeled_set(records: Sequence[Any], index_records: Sequence[Any] | None = None) -> EvalSet:
    """Label relevance over records with a ``label`` and an input (see :func:`record_input`)."""
    queries = [record_input(r) for r in records]
    labels = [r.label for r in records]
    if index_records is None:
        relevance = LabelRelevance(labels, labels, own=np.arange(len(records)))
        return EvalSet(queries, None, relevance)
    index_labels = [r.label for r in index_records]
    return EvalSet(queries, [record_input(r) for r in index_records], LabelRelevance(labels, index_labels))


def pairs_set(
    queries: Sequence[Any],
    index: Sequence[Any],
    pairs: Iterable[Sequence[float]],
    query_names: list[str] | None = None,
    index_names: list[str] | None = None,
) -> EvalSet:
    """Pair relevance: ``pairs`` holds (query position, index position) or (query, index, grade) rows."""
    rows = [tuple(p) for p in pairs]
    grades = np.array([p[2] if len(p) > 2 else 1.0 for p in rows], np.float64)
    query_ids = np.array([p[0] for p in rows], np.int64)
    index_ids = np.array([p[1] for p in rows], np.int64)
    relevance = PairRelevance(len(queries), len(index), query_ids, index_ids, grades)
    return EvalSet(list(queries), list(index), relevance, query_names, index_names)


def paired_set(items: Sequence[Any]) -> EvalSet:
    """Cross-modal pairs: each distinct text queries all the images; its own images are relevant."""
    texts, images = zip(*(pair_inputs(item) for item in items), strict=True) if items else ((), ())
    query_of: dict[str, int] = {}
    query_ids = [query_of.setdefault(text, len(query_of)) for text in texts]
    return pairs_set(list(query_of), list(images), zip(query_ids, range(len(images)), strict=True))


def query_doc_set(records: list[QueryDocItem]) -> EvalSet:
    """Distinct queries against distinct documents; a query's own documents are relevant."""
    queries: dict[str, int] = {}
    documents: dict[str, int] = {}
    names: dict[str, str] = {}
    for record in records:
        names.setdefault(record.query, record.source or f"query {len(queries)}")
        queries.setdefault(record.query, len(queries))
        documents.setdefault(record.document, len(documents))
    pairs = dict.fromkeys((queries[r.query], documents[r.document]) for r in records)
    return pairs_set(list(queries), list(documents), list(pairs), query_names=[names[q] for q in queries])


EVAL_SETS: dict[str, Callable[[Sequence[Any]], EvalSet]] = {
    LABELED: labeled_set,
    TEXT_IMAGE: paired_set,
    QUERY_DOC: query_doc_set,
}
"""The retrieval data of each shape evaluated by retrieval (``Shape.metrics == RANK``), by the shape's name."""


def shape_name(records: Sequence[Any]) -> str:
    """The shape of (non-empty) evaluation records: the records' own, else (records of another type) labeled
    items when they carry a label, text-image pairs when not."""
    first = records[0]
    return getattr(first, "shape", LABELED if hasattr(first, "label") else TEXT_IMAGE)


def records_set(records: Sequence[Any]) -> EvalSet:
    """Evaluation records as retrieval data (:data:`EVAL_SETS`): labeled items (leave-one-out), text-image pairs
    or query-document pairs. Scored pairs are not retrieval data (runs score them by correlation,
    evaluation.scored)."""
    if not records:
        return paired_set(records)
    shape = shape_name(records)
    if shape not in EVAL_SETS:
        correlations = ", ".join(CORRELATIONS)
        raise EvaluationError(
            f"{SHAPES[shape].description} are evaluated by correlation ({correlations}) in runs, not by retrieval"
        )
    return EVAL_SETS[shape](list(records))
