"""Vectors as they enter a data set: one dimension, finite numbers, and one length throughout (the model's
``input_dim`` when it is set).

An array of more than one dimension is refused rather than flattened (``(1, d)`` and ``(d, 1)`` are read as
``d`` numbers); NaN and infinities are refused with their position; a vector whose length differs from the
data set's is named with both lengths.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from finetuner_protocol.data.errors import Problem


class VectorError(ValueError):
    """One vector that cannot be read as a vector of numbers; the message says why."""


def to_vector(value: Any) -> np.ndarray:
    """``value`` as a 1-d float32 array; :class:`VectorError` for what is not one."""
    try:
        array = np.asarray(value.detach().cpu() if hasattr(value, "detach") else value, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise VectorError(f"the vector is not numbers ({exc})") from None
    if sum(size > 1 for size in array.shape) > 1:
        raise VectorError(f"a vector has one dimension; this array has shape {tuple(array.shape)}")
    return array.reshape(-1)


def vector_problem(vector: np.ndarray) -> str | None:
    """What is wrong with one vector on its own (None: nothing)."""
    if vector.size == 0:
        return "the vector is empty"
    bad = np.flatnonzero(~np.isfinite(vector))
    if bad.size:
        first = int(bad[0])
        return f"the vector holds {vector[first]} at position {first}; every number must be finite"
    return None


def length_problems(wheres: list[str], vectors: list[np.ndarray], input_dim: int | None = None) -> list[Problem]:
    """The vectors whose length is not the data set's: ``input_dim`` when set, else the most common length.
    When no vector has the length ``input_dim`` asks for, one problem says so."""
    lengths = [vector.size for vector in vectors]
    if not lengths:
        return []
    if input_dim is None:
        expected = Counter(lengths).most_common(1)[0][0]
        reason = f"the other vectors of this data set have {expected}"
    elif input_dim not in lengths and len(set(lengths)) == 1:
        reason = f"the vector has {lengths[0]} numbers, as do all {len(lengths)}, but input_dim is {input_dim}"
        return [Problem(wheres[0], reason)]
    else:
        expected, reason = input_dim, f"input_dim is {input_dim}"
    return [
        Problem(where, f"the vector has {length} numbers; {reason}")
        for where, length in zip(wheres, lengths, strict=True)
        if length != expected
    ]
