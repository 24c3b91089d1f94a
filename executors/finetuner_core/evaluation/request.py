"""An ``/evaluate`` request's documents as evaluation data, refused whole with every problem listed.

Documents are duck-typed (anything with the fields of :class:`finetuner_protocol.wire.FinetunerDoc`):

- ``kind="item"``: one item holding one input: ``text``, or an image (encoded bytes in ``blob``, a data URI in
  ``uri``, or pixels in ``tensor``), or a vector (a 1-d ``tensor``). ``role`` says
  whether it is a ``"query"``, an ``"index"`` item, or both (unset: it queries all the other items and is
  in the index). ``finetuner_label`` gives label relevance; ``name`` is the item's id, which pairs refer to.
- ``kind="relevance"``: pairs, as JSON in ``payload``: ``{"pairs": [[query_name, item_name], ...]}`` or
  ``[query_name, item_name, grade]`` rows for graded relevance. With pairs, relevance is by pairs; without,
  by label.

Labeled items with no role are the classic leave-one-out evaluation. Text queries with ``role="query"``
against images with ``role="index"`` (by label or by pairs) are cross-modal evaluation.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from typing import Any

import numpy as np

from finetuner_core.evaluation.dataset import EvalSet
from finetuner_core.evaluation.errors import EvaluationError
from finetuner_core.evaluation.relevance import LabelRelevance, PairRelevance
from finetuner_protocol.data.images import load_images

ROLES = ("query", "index")
IMAGE_FIELDS = ("blob", "uri", "tensor")
MAX_PROBLEMS = 20


def doc_input(doc: Any) -> tuple[str, Any]:
    """The kind (``text``, ``image``, ``vector``, ``none``) and raw value of the input an item carries."""
    if getattr(doc, "text", None) is not None:
        return "text", doc.text
    for field in ("blob", "uri", "tensor"):
        value = getattr(doc, field, None)
        if field == "uri" and value is not None and not str(value).strip().lower().startswith("data:"):
            raise EvaluationError(
                f"an image 'uri' is a data: URI; the server reads no paths ({str(value)[:80]!r}): send the image "
                "bytes in 'blob'"
            )
        if value is not None:
            is_vector = field == "tensor" and np.ndim(value) == 1
            return ("vector", np.asarray(value, np.float32)) if is_vector else ("image", value)
    return "none", None


def _inputs(items: list[tuple[int, Any]]) -> dict[int, Any]:
    """Model inputs by document number: texts and vectors as they are, images decoded (bad ones listed)."""
    raw = {i: doc_input(d) for i, d in items}
    images = [i for i, (kind, _) in raw.items() if kind == "image"]
    decoded = load_images([raw[i][1] for i in images], [f"eval document {i}" for i in images], dataset="eval")
    return {i: value for i, (_, value) in raw.items()} | dict(zip(images, decoded, strict=True))


def is_retrieval_request(docs: Iterable[Any]) -> bool:
    """True when the documents use roles or pairs (anything beyond leave-one-out labeled items)."""
    return any(getattr(d, "role", None) or getattr(d, "kind", "item") == "relevance" for d in docs)


def eval_set_from_docs(docs: Iterable[Any]) -> EvalSet:
    """The evaluation data of a request, or one :class:`EvaluationError` listing every problem."""
    docs = list(docs)
    items = [(i, d) for i, d in enumerate(docs) if getattr(d, "kind", "item") == "item"]
    by_pairs = _has_relevance_doc(docs)
    pair_rows, problems = _pair_rows(docs)
    _raise(problems + _item_problems(items, by_pairs))
    query_items, index_items = _by_role(items, "query"), _by_role(items, "index")
    own = _own(query_items, index_items)
    names = _names(query_items), _names(index_items)
    if by_pairs:
        relevance = _pair_relevance(pair_rows, *names, own)
    else:
        labels = [d.finetuner_label for _, d in query_items], [d.finetuner_label for _, d in index_items]
        relevance = LabelRelevance(*labels, own=own)
    inputs = _inputs(items)
    index = None if len(query_items) == len(index_items) == len(items) else [inputs[i] for i, _ in index_items]
    return EvalSet([inputs[i] for i, _ in query_items], index, relevance, *names)


def _by_role(items: list[tuple[int, Any]], role: str) -> list[tuple[int, Any]]:
    """The items that play ``role``: those with that role and those with none."""
    chosen = [(i, d) for i, d in items if getattr(d, "role", None) in (None, "", role)]
    if not chosen:
        raise EvaluationError(f"evaluation data rejected: no {role} item (items with role {role!r} or none)")
    return chosen


def _has_relevance_doc(docs: list[Any]) -> bool:
    return any(getattr(d, "kind", "item") == "relevance" for d in docs)


def _pair_rows(docs: list[Any]) -> tuple[list[tuple[str, str, float]], list[str]]:
    rows, problems = [], []
    for i, doc in enumerate(docs):
        if getattr(doc, "kind", "item") != "relevance":
            continue
        try:
            pairs = json.loads(doc.payload or "")["pairs"]
        except (ValueError, KeyError, TypeError):
            problems.append(f"document {i}: a relevance document holds {{'pairs': [[query, item, grade?], ...]}}")
            continue
        for n, pair in enumerate(pairs):
            if not isinstance(pair, list | tuple) or len(pair) not in (2, 3):
                problems.append(f"document {i} pair {n}: expected [query, item] or [query, item, grade]")
                continue
            grade = pair[2] if len(pair) == 3 else 1.0
            if not isinstance(grade, int | float) or not np.isfinite(grade) or grade < 0:
                problems.append(f"document {i} pair {n}: grade must be a number >= 0, got {grade!r}")
                continue
            rows.append((str(pair[0]), str(pair[1]), float(grade)))
    return rows, problems


def _item_problems(items: list[tuple[int, Any]], by_pairs: bool) -> list[str]:
    problems = []
    for i, doc in items:
        role = getattr(doc, "role", None)
        if role not in (None, "", *ROLES):
            problems.append(f"document {i}: unknown role {role!r}; allowed: {', '.join(ROLES)} (or none: both)")
        if doc_input(doc)[0] == "none":
            problems.append(f"document {i}: no input (set text, or an image in blob, uri or tensor, or a vector)")
        elif getattr(doc, "text", None) is not None and any(getattr(doc, f, None) is not None for f in IMAGE_FIELDS):
            problems.append(f"document {i}: holds text and an image; an evaluation item holds one input")
        if by_pairs and not getattr(doc, "name", None):
            problems.append(f"document {i}: no name; pairs refer to items by name")
        if not by_pairs and getattr(doc, "finetuner_label", None) is None:
            problems.append(f"document {i}: no finetuner_label; without pairs, relevance is by label")
    for role in ROLES if by_pairs else ():
        counts = Counter(getattr(d, "name", None) for _, d in items if getattr(d, "role", None) in (None, "", role))
        repeated = sorted(name for name, count in counts.items() if name and count > 1)
        if repeated:
            problems.append(f"{role} names must be unique; repeated: {', '.join(repeated[:5])}")
    return problems


def _own(query_items: list[tuple[int, Any]], index_items: list[tuple[int, Any]]) -> np.ndarray:
    """Index position of each query that is also an index item (no role), else -1.  # (q,)"""
    position = {i: p for p, (i, _) in enumerate(index_items)}
    return np.array([position.get(i, -1) for i, _ in query_items], np.int64)


def _names(items: list[tuple[int, Any]]) -> list[str]:
    return [getattr(d, "name", None) or f"document {i}" for i, d in items]


def _pair_relevance(
    rows: list[tuple[str, str, float]], query_names: list[str], index_names: list[str], own: np.ndarray
) -> PairRelevance:
    query_of = {name: p for p, name in enumerate(query_names)}
    item_of = {name: p for p, name in enumerate(index_names)}
    unknown = [f"query {q!r}" for q, _, _ in rows if q not in query_of]
    unknown += [f"item {d!r}" for _, d, _ in rows if d not in item_of]
    if unknown:
        raise EvaluationError(
            f"evaluation data rejected: {len(unknown)} pairs name unknown items: {', '.join(unknown[:5])}"
        )
    rows = [row for row in rows if row[2] > 0]
    return PairRelevance(
        len(query_names),
        len(index_names),
        np.array([query_of[q] for q, _, _ in rows], np.int64),
        np.array([item_of[d] for _, d, _ in rows], np.int64),
        np.array([g for _, _, g in rows], np.float64),
        own=own,
    )


def _raise(problems: list[str]) -> None:
    if problems:
        shown = "\n".join(f"  {p}" for p in problems[:MAX_PROBLEMS])
        more = f"\n  ... and {len(problems) - MAX_PROBLEMS} more" if len(problems) > MAX_PROBLEMS else ""
        raise EvaluationError(f"evaluation data rejected: {len(problems)} problems\n{shown}{more}")
