"""Checks of evaluation input, each failing with an :class:`EvaluationError` that says what to change."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from finetuner_core.evaluation.errors import EvaluationError
from finetuner_core.evaluation.index import non_finite_rows
from finetuner_protocol.data import eval_depth


def check_not_empty(num_queries: int, num_index: int) -> None:
    try:
        eval_depth.check_not_empty(num_queries, num_index)
    except ValueError as exc:
        raise EvaluationError(str(exc)) from None


def check_embeddings(embeddings: np.ndarray, count: int, what: str, name: Callable[[int], str]) -> np.ndarray:
    """``embeddings`` as float32 ``# (count, dim)`` with finite values, or a message naming bad items."""
    embeddings = np.asarray(embeddings, dtype=np.float32)
    if embeddings.ndim != 2 or len(embeddings) != count:
        raise EvaluationError(
            f"the {what} model returned embeddings of shape {embeddings.shape} for {count} inputs; "
            f"expected ({count}, dim)"
        )
    bad = non_finite_rows(embeddings)
    if len(bad):
        names = ", ".join(name(int(i)) for i in bad[:5])
        raise EvaluationError(
            f"{len(bad)} {what} embeddings hold NaN or infinite values (e.g. {names}): the model produced "
            "them; check those inputs and the model's weights"
        )
    return embeddings


def check_dimensions(query_dim: int, index_dim: int) -> None:
    if query_dim != index_dim:
        raise EvaluationError(
            f"query embeddings are {query_dim}-d but index embeddings are {index_dim}-d: queries and index "
            "must be embedded into one space (one model, or the two towers of one CLIP model)"
        )


def check_ks(ks: tuple[int, ...], num_index: int, leaves_own_out: bool) -> None:
    """Every k must fit in the items a query can retrieve (the index, less the query itself)."""
    try:
        eval_depth.check_ks(ks, num_index, leaves_own_out)
    except ValueError as exc:
        raise EvaluationError(str(exc)) from None


def normalise_ks(ks) -> tuple[int, ...]:
    """``ks`` sorted, without repeats; each must be an integer >= 1."""
    ks = tuple(ks)
    if not ks or any(not isinstance(k, int | np.integer) or k < 1 for k in ks):
        raise EvaluationError(f"eval_ks must be integers >= 1, got {list(ks)}")
    return tuple(sorted({int(k) for k in ks}))
