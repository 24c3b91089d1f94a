"""Query-document pairs: a query and a document that answers it, unlabeled (every other document of a batch is
the query's negative). CSV rows ``query,document``; documents with ``text`` (the query) and ``text_pair``."""

from __future__ import annotations

from typing import Any

from finetuner_protocol.data.records import QUERY_DOC, QueryDocItem
from finetuner_protocol.data.validation import validate_query_docs
from finetuner_protocol.shapes.base import RANK, LoadImage, SaveImage, Shape


def _to_row(record: QueryDocItem, save_image: SaveImage) -> dict[str, Any]:
    return {"query": record.query, "document": record.document}


def _from_row(row: dict[str, Any], load_image: LoadImage) -> QueryDocItem:
    return QueryDocItem(row["query"], row["document"])


def _eval_sizes(records: list[QueryDocItem]) -> tuple[int, int, bool]:
    """Each distinct query against every distinct document."""
    return len({record.query for record in records}), len({record.document for record in records}), False


SHAPE = Shape(
    name=QUERY_DOC,
    description="query-document pairs",
    record=QueryDocItem,
    columns=("query", "document"),
    read_row=lambda where, cells: QueryDocItem(cells[0], cells[1], where),
    read_doc=lambda doc, where: QueryDocItem(doc.text, doc.text_pair, where),
    doc_marks=("text_pair",),
    to_doc=lambda record: {"text": record.query, "text_pair": record.document},
    row_fields=frozenset({"query", "document"}),
    to_row=_to_row,
    from_row=_from_row,
    validate=lambda records, dataset, min_items_per_class, whole: validate_query_docs(records, dataset, whole),
    holds=lambda record: QUERY_DOC,
    modality=lambda record: "text",
    text_columns=lambda record: {"query": record.query, "document": record.document},
    default_loss="MultipleNegativesRankingLoss",
    losses=("MultipleNegativesRankingLoss", "CachedMultipleNegativesRankingLoss"),
    metrics=RANK,
    default_monitor="mrr@10",
    eval_sizes=_eval_sizes,
    card_counts=("queries", "query"),
    card_evaluation="Retrieval on the evaluation data ({count} queries: each query against every document), before "
    "and after training.",
)
