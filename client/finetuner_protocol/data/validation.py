"""Checks a data set as a whole before anything of it is stored.

Each check adds :class:`Problem` s; every ``validate_*`` function raises one :class:`DataError` with all of them,
so a data set is accepted entirely or not at all. ``finetuner_protocol.shapes.validate_records`` runs the checks
of the data's shape (``Shape.validate``).
With ``whole=False`` only each record is checked (one batch of a dataset); what needs the whole set (classes,
the number of pairs, different scores) is checked when the whole set is there.
"""

from __future__ import annotations

import math
import re
from collections import Counter

from finetuner_protocol.data.errors import DataError, Problem
from finetuner_protocol.data.records import LabeledItem, QueryDocItem, ScoredPairItem, content_kind
from finetuner_protocol.data.vectors import length_problems, vector_problem

SURROGATE = re.compile("[\ud800-\udfff]")


def validate_labeled(
    records: list[LabeledItem], dataset: str, min_items_per_class: int = 2, whole: bool = True
) -> None:
    """Refuse ``records`` unless every text and label is present and the classes can form triplets.

    ``min_items_per_class`` is what the sampler needs: an anchor needs a positive of its own class.
    """
    if not records:
        raise DataError(dataset, [Problem(dataset, "the data set is empty")])
    problems = [p for index, record in enumerate(records) for p in _record_problems(record, index)]
    problems += _vector_length_problems(records)
    if not problems and whole:
        problems = _class_problems(records, dataset, min_items_per_class)
    if problems:
        order = {record.source or f"item {index}": index for index, record in enumerate(records)}
        raise DataError(dataset, sorted(problems, key=lambda problem: order.get(problem.where, -1)))


def _vector_length_problems(records: list[LabeledItem]) -> list[Problem]:
    """Vectors (good on their own) whose length differs from the others', in the order of the records."""
    vectors = [
        (record.source or f"item {index}", record.content)
        for index, record in enumerate(records)
        if record.content is not None
        and content_kind(record.content) == "vector"
        and not vector_problem(record.content)
    ]
    return length_problems([where for where, _ in vectors], [vector for _, vector in vectors])


def _record_problems(record: LabeledItem, index: int) -> list[Problem]:
    where = record.source or f"item {index}"
    problems = []
    if record.content is None or (isinstance(record.content, str) and not record.content.strip()):
        problems.append(Problem(where, "text is empty or whitespace"))
    elif content_kind(record.content) == "vector" and (reason := vector_problem(record.content)):
        problems.append(Problem(where, reason))
    if record.label is None or not str(record.label).strip():
        problems.append(Problem(where, "label is missing"))
    texts = {"text": record.content, "label": None if record.label is None else str(record.label)}
    problems += [Problem(where, reason) for reason in unstorable(texts)]
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
        Problem(record.source or f"item {index}", reason)
        for index, record in enumerate(records)
        for reason in _caption_problems(record.text)
    ]
    if problems:
        raise DataError(dataset, problems)


def _caption_problems(text) -> list[str]:
    return unstorable({"text": text}) if _has_text(text) else ["text is empty or whitespace"]


def validate_query_docs(records: list[QueryDocItem], dataset: str, whole: bool = True) -> None:
    """Refuse query-document pairs unless every query and document is text, and a batch can hold two queries
    (each query's negatives are the other queries' documents)."""
    _validate_text_pairs(
        records,
        dataset,
        whole,
        query_doc_problems,
        distinct=lambda record: record.query,
        too_few=f"all {len(records)} pairs share one query; in-batch negatives need at least 2 different queries",
    )


def query_doc_problems(record: QueryDocItem) -> list[str]:
    """What is wrong with one query-document pair (nothing: an empty list)."""
    problems = []
    if not _has_text(record.query):
        problems.append("query is empty or whitespace")
    if not _has_text(record.document):
        problems.append("document (the second text) is missing, empty or whitespace")
    return problems + unstorable({"query": record.query, "document": record.document})


def validate_scored(records: list[ScoredPairItem], dataset: str, whole: bool = True) -> None:
    """Refuse scored pairs unless both texts are present, every score is a finite number, and the scores differ
    (a loss on scores learns from their order or their differences)."""
    _validate_text_pairs(
        records,
        dataset,
        whole,
        scored_problems,
        distinct=lambda record: record.score,
        too_few=f"every score is {records[0].score!r}; scored pairs need at least 2 different scores"
        if records
        else "",
    )


def _validate_text_pairs(records: list, dataset: str, whole: bool, row_problems, distinct, too_few: str) -> None:
    """Each row's problems; with ``whole``, also enough pairs and at least two different ``distinct`` values."""
    if not records:
        raise DataError(dataset, [Problem(dataset, "the data set is empty")])
    problems = [
        Problem(record.source or f"item {index}", reason)
        for index, record in enumerate(records)
        for reason in row_problems(record)
    ]
    if not problems and whole:
        problems = _pair_count_problems(records, dataset)
    if not problems and whole and len({distinct(record) for record in records}) < 2:
        problems = [Problem(dataset, too_few)]
    if problems:
        raise DataError(dataset, problems)


def scored_problems(record: ScoredPairItem) -> list[str]:
    """What is wrong with one scored pair (nothing: an empty list)."""
    problems = []
    if not _has_text(record.text):
        problems.append("text is empty or whitespace")
    if not _has_text(record.text_pair):
        problems.append("second text is missing, empty or whitespace")
    score = record.score
    if score is None:
        problems.append("score is missing")
    elif isinstance(score, bool) or not isinstance(score, int | float):
        problems.append(f"score {score!r} is not a number")
    elif not math.isfinite(score):
        problems.append(f"score is {score}, not a finite number")
    return problems + unstorable({"text": record.text, "second text": record.text_pair})


def _pair_count_problems(records: list, dataset: str) -> list[Problem]:
    if len(records) >= 2:
        return []
    return [Problem(dataset, "needs at least 2 pairs: the other pairs of a batch are what each pair is compared with")]


def unstorable(texts: dict[str, object]) -> list[str]:
    """A reason for each text that cannot be written as UTF-8: it holds a lone surrogate (``\\ud800`` ...),
    half of a character that Python strings can carry and no file can."""
    reasons = []
    for field, text in texts.items():
        if not isinstance(text, str):
            continue
        found = SURROGATE.search(text)
        if found:
            reason = f"{field} holds a lone surrogate (U+{ord(found.group()):04X}) at position {found.start()}, "
            reasons.append(reason + "half of a character, which cannot be stored as UTF-8")
    return reasons


def _has_text(value) -> bool:
    return isinstance(value, str) and bool(value.strip())
