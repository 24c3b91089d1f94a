"""Checks a labeled data set as a whole before anything of it is stored.

Each check adds :class:`Problem` s; :func:`validate_labeled` raises one :class:`DataError` with all of them,
so a data set is accepted entirely or not at all.
"""

from __future__ import annotations

from collections import Counter

from finetuner_core.data.errors import DataError, Problem
from finetuner_core.data.records import LabeledItem


def validate_labeled(records: list[LabeledItem], dataset: str, min_items_per_class: int = 2) -> None:
    """Refuse ``records`` unless every text and label is present and the classes can form triplets.

    ``min_items_per_class`` is what the sampler needs: an anchor needs a positive of its own class.
    """
    if not records:
        raise DataError(dataset, [Problem(dataset, "the data set is empty")])
    problems = [p for index, record in enumerate(records) for p in _record_problems(record, index)]
    if not problems:
        problems = _class_problems(records, dataset, min_items_per_class)
    if problems:
        raise DataError(dataset, problems)


def _record_problems(record: LabeledItem, index: int) -> list[Problem]:
    where = record.source or f"item {index}"
    problems = []
    if record.content is None or (isinstance(record.content, str) and not record.content.strip()):
        problems.append(Problem(where, "text is empty or whitespace"))
    if record.label is None or not str(record.label).strip():
        problems.append(Problem(where, "label is missing"))
    return problems


def _class_problems(records: list[LabeledItem], dataset: str, min_items_per_class: int) -> list[Problem]:
    counts = Counter(record.label for record in records)
    if len(counts) < 2:
        only = next(iter(counts))
        reason = f"needs at least 2 classes to build negatives, found 1 ({only!r})"
        return [Problem(dataset, reason)]
    small = {label for label, count in counts.items() if count < min_items_per_class}
    return [
        Problem(
            record.source or f"item {index}",
            f"class {record.label!r} has {counts[record.label]} item(s); "
            f"the sampler needs at least {min_items_per_class} per class",
        )
        for index, record in enumerate(records)
        if record.label in small
    ]


def validate_pairs(records: list, dataset: str) -> None:
    """Refuse text-image pairs unless there are some and every text is present (images are checked on load)."""
    if not records:
        raise DataError(dataset, [Problem(dataset, "the data set is empty")])
    problems = [
        Problem(record.source or f"item {index}", "text is empty or whitespace")
        for index, record in enumerate(records)
        if not isinstance(record.text, str) or not record.text.strip()
    ]
    if problems:
        raise DataError(dataset, problems)
