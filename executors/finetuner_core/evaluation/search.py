"""``/search``: the evaluator's top-k search, one shard of the index per evaluator shard (see :mod:`.shards`).

A request holds query items (``role="query"``, or no role) and either index items (``role="index"``) or
``search.dataset_id``, a stored dataset whose items are the index. Every shard receives the whole request,
encodes the queries and its own slice of the index (:func:`.shards.shard_range`), and answers its top k with
global ids (:class:`.shards.ShardAnswer`, plus the names and labels of the items it returns). Jina's head
gathers the shards' answers (``/search`` polls every shard); :func:`merge_search_answers` merges them into the
global top k, exactly the unsharded search's. A dataset's slice is encoded once and kept (:class:`SliceCache`).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from finetuner_core.evaluation.dataset import record_input
from finetuner_core.evaluation.errors import EvaluationError
from finetuner_core.evaluation.index import METRIC_TYPES
from finetuner_core.evaluation.request import doc_input
from finetuner_core.evaluation.shards import (
    ENCODE_BLOCK,
    ShardAnswer,
    encode_blocks,
    merge_answers,
    search_slice,
    shard_range,
)
from finetuner_protocol.data.images import load_images

Encode = Callable[[list[Any]], np.ndarray]


class SearchOptions(BaseModel):
    """``parameters["search"]``: how many results, the metric, and where the index comes from."""

    model_config = ConfigDict(extra="forbid")

    k: int = Field(10, ge=1, le=10000, description="results per query")
    metric: Literal[METRIC_TYPES] = Field("cosine", description="cosine | inner_product | l2")
    dataset_id: str | None = Field(None, description="a stored dataset as the index (else the role='index' items)")
    batch_size: int = Field(256, ge=1, description="queries searched at once (bounds memory)")


def parse_search_options(options: dict[str, Any] | None) -> SearchOptions:
    try:
        return SearchOptions.model_validate(options or {})
    except ValidationError as exc:
        lines = [f"  search.{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()]
        raise EvaluationError("invalid search options:\n" + "\n".join(lines)) from None


@dataclass
class IndexItems:
    """The whole index as the shards see it: its size, and how to read a range of it (inputs, names, labels)."""

    total: int
    read: Callable[[range], tuple[list[Any], list[str], list[str | None]]]
    key: str | None = None  # set for a stored dataset: its slices may be kept


@dataclass
class IndexSlice:
    positions: range
    embeddings: np.ndarray  # (len(positions), dim)
    names: list[str]
    labels: list[str | None]


def query_docs(docs: Sequence[Any]) -> tuple[list[Any], list[str]]:
    """The queries of a request (``role="query"`` or no role): inputs (images decoded) and names."""
    chosen = [(i, d) for i, d in enumerate(docs) if getattr(d, "kind", "item") == "item" and _role(d) == "query"]
    if not chosen:
        raise EvaluationError("search rejected: no query item (items with role 'query' or no role)")
    return _inputs(chosen, "query"), [getattr(d, "name", None) or f"document {i}" for i, d in chosen]


def docs_index(docs: Sequence[Any]) -> IndexItems:
    """The ``role="index"`` items of a request as the index; only a shard's own slice is decoded."""
    chosen = [(i, d) for i, d in enumerate(docs) if getattr(d, "kind", "item") == "item" and _role(d) == "index"]
    if not chosen:
        raise EvaluationError("search rejected: no index (give role='index' items or search.dataset_id)")

    def read(positions: range):
        part = chosen[positions.start : positions.stop]
        names = [getattr(d, "name", None) or f"document {i}" for i, d in part]
        return _inputs(part, "index"), names, [getattr(d, "finetuner_label", None) for _, d in part]

    return IndexItems(len(chosen), read)


def records_index(dataset_id: str, total: int, load: Callable[[], Sequence[Any]]) -> IndexItems:
    """A stored dataset of ``total`` labeled items as the index (item names ``<dataset id>:<position>``); its
    records are loaded (``load``) only when a shard's slice is not kept already."""

    def read(positions: range):
        records = load()
        if len(records) != total:
            raise EvaluationError(f"dataset {dataset_id} holds {len(records)} items, {total} expected")
        if records and not hasattr(records[0], "label"):
            raise EvaluationError(f"dataset {dataset_id} holds pairs; a search index is built from labeled items")
        part = records[positions.start : positions.stop]
        names = [f"{dataset_id}:{p}" for p in positions]
        return [record_input(r) for r in part], names, [r.label for r in part]

    return IndexItems(total, read, key=dataset_id)


class SliceCache:
    """The last few encoded slices of stored datasets, by (dataset, model, shard, shards)."""

    def __init__(self, size: int = 2):
        self.size = size
        self._slices: OrderedDict[tuple, IndexSlice] = OrderedDict()

    def get(self, key: tuple | None, build: Callable[[], IndexSlice]) -> IndexSlice:
        if key is None or self.size < 1:
            return build()
        if key not in self._slices:
            self._slices[key] = build()
            while len(self._slices) > self.size:
                self._slices.popitem(last=False)
        self._slices.move_to_end(key)
        return self._slices[key]


def search_shard(
    queries: list[Any],
    index: IndexItems,
    encode_query: Encode,
    encode_index: Encode,
    options: SearchOptions,
    shard: int = 0,
    shards: int = 1,
    cache: SliceCache | None = None,
    model_key: str = "",
) -> dict[str, Any]:
    """This shard's answer: its top k of every query with global ids, and the names of the items it returns."""
    if options.k > index.total:
        raise EvaluationError(f"k={options.k} is larger than the index ({index.total} items)")
    positions = shard_range(index.total, shards, shard)
    key = None if index.key is None else (index.key, model_key, shard, shards)
    part = (cache or SliceCache(0)).get(key, lambda: _encode_slice(index, positions, encode_index))
    query_embeddings = encode_blocks(encode_query, queries)
    if not len(positions):
        empty = np.zeros((len(queries), 0))
        return ShardAnswer(shard, shards, index.total, empty, empty.astype(np.int64)).to_payload() | {"items": {}}
    scores, ids = search_slice(
        part.embeddings, query_embeddings, options.k, options.metric, positions.start, options.batch_size
    )
    answer = ShardAnswer(shard, shards, index.total, scores, ids).to_payload()
    returned = np.unique(ids) - positions.start
    answer["items"] = {
        str(positions.start + p): {"name": part.names[p], "label": part.labels[p]} for p in returned.tolist()
    }
    return answer


def merge_search_answers(payloads: Sequence[dict[str, Any]], k: int | None = None) -> dict[str, Any]:
    """The global top k from every shard's ``/search`` answer: ``scores``, ``ids`` and ``results`` (name,
    label, score per place) for each query, in the unsharded order (score, then lower id)."""
    answers = [ShardAnswer.from_payload(p) for p in payloads]
    k = k or max((a.ids.shape[1] for a in answers), default=0)
    scores, ids = merge_answers(answers, k)
    items = {int(i): item for p in payloads for i, item in p.get("items", {}).items()}
    results = [
        [
            {"id": int(i), "score": float(s), **items.get(int(i), {})}
            for s, i in zip(row_s, row_i, strict=True)
            if i >= 0
        ]
        for row_s, row_i in zip(scores, ids, strict=True)
    ]
    return {
        "k": k,
        "total": answers[0].total,
        "shards": answers[0].shards,
        "scores": scores,
        "ids": ids,
        "results": results,
    }


def search_result(payloads: Sequence[dict[str, Any]], k: int) -> dict[str, Any]:
    """The answer of a whole ``/search`` (every shard's answer merged; refused when a shard is missing), as JSON:
    ``k``, ``total``, ``shards``, and per query ``ids``, ``scores`` and ``results`` (id, score, name, label)."""
    merged = merge_search_answers(payloads, k)
    return {**merged, "scores": merged["scores"].tolist(), "ids": merged["ids"].tolist()}


def shard_payloads(payloads: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The shards' answers among result payloads (a shard's answer names its ``shard``)."""
    return [p for p in payloads if "shard" in p]


def _encode_slice(index: IndexItems, positions: range, encode: Encode) -> IndexSlice:
    if not len(positions):
        return IndexSlice(positions, np.zeros((0, 0), np.float32), [], [])
    inputs, names, labels = index.read(positions)
    return IndexSlice(positions, encode_blocks(encode, inputs, ENCODE_BLOCK), names, labels)


def _role(doc: Any) -> str:
    role = getattr(doc, "role", None) or "query"
    if role not in ("query", "index"):
        raise EvaluationError(f"search rejected: unknown role {role!r}; allowed: query, index")
    return role


def _inputs(items: list[tuple[int, Any]], what: str) -> list[Any]:
    """Model inputs of ``items``: texts and vectors as they are, images decoded (every bad one listed)."""
    raw = [(i, *doc_input(d)) for i, d in items]
    missing = [f"document {i}" for i, kind, _ in raw if kind == "none"]
    if missing:
        raise EvaluationError(f"search rejected: {what} items without input: {', '.join(missing[:10])}")
    images = [(n, value) for n, (_, kind, value) in enumerate(raw) if kind == "image"]
    decoded = load_images([v for _, v in images], [f"{what} document {raw[n][0]}" for n, _ in images], dataset=what)
    inputs = [value for _, _, value in raw]
    for (n, _), image in zip(images, decoded, strict=True):
        inputs[n] = image
    return inputs
