"""Whether evaluation data can be scored at every cut-off k, judged before a run is stored and a model loaded.

A shape evaluated by retrieval says how many queries and index items its records make and whether a query's own
item is left out of its results (``Shape.eval_sizes``); a shape evaluated by correlation has no cut-off (its
validation asks for two pairs and two different scores). The core's evaluation raises these same reasons.
"""

from __future__ import annotations

from collections.abc import Iterable

from finetuner_protocol.shapes import shape_of


def check_eval_depth(records: list, ks: Iterable[int]) -> None:
    """Refuse, with a ValueError, evaluation ``records`` that cannot be scored at every k of ``ks``."""
    shape = shape_of(records)
    if shape.eval_sizes is None:
        return
    num_queries, num_index, leaves_own_out = shape.eval_sizes(records)
    check_not_empty(num_queries, num_index)
    check_ks(tuple(sorted(set(ks))), num_index, leaves_own_out)


def check_not_empty(num_queries: int, num_index: int) -> None:
    if num_queries == 0:
        raise ValueError("no queries to evaluate: the evaluation data holds no query item")
    if num_index == 0:
        raise ValueError("the index is empty: the evaluation data holds no index item to retrieve")


def check_ks(ks: tuple[int, ...], num_index: int, leaves_own_out: bool) -> None:
    """Every k must fit in the items a query can retrieve (the index, less the query itself)."""
    candidates = num_index - int(leaves_own_out)
    if max(ks) > candidates:
        detail = f"{num_index} index items, the query itself left out" if leaves_own_out else "the index size"
        raise ValueError(
            f"k={max(ks)} is larger than the {candidates} items a query can retrieve ({detail}); "
            "use smaller eval_ks or more evaluation data"
        )
