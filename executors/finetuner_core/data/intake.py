"""From what a user sent (item documents and CSV files, for training and evaluation) to validated records.

Works on duck-typed documents (anything with the attributes of :class:`finetuner_core.wire.FinetunerDoc`),
so it is tested without a Flow. A data set is accepted whole or refused with one :class:`DataError`.
"""

from __future__ import annotations

from collections import defaultdict

from finetuner_core.data.csv_reader import CSVOptions, read_labeled_csv
from finetuner_core.data.errors import DataError, Problem
from finetuner_core.data.records import LabeledText
from finetuner_core.data.validation import validate_labeled

SPLITS = ("train", "eval")


def parse_fit_data(docs, config) -> dict[str, list[LabeledText]]:
    """Training (required) and evaluation (optional) records for a fit with ``config`` (a FitConfig).

    The class sampler needs two items of a class in a batch, so it refuses classes with one item.
    """
    min_items = 2 if config.sampler == "class" else 1
    return parse_labeled_data(docs, config.csv_options, min_items_per_class=min_items)


def parse_labeled_data(
    docs, csv_options: CSVOptions, min_items_per_class: int = 2, required: tuple[str, ...] = ("train",)
) -> dict[str, list[LabeledText]]:
    """Validated labeled records per split (``train``/``eval``) from item documents and CSV files."""
    by_split: dict[str, list] = defaultdict(list)
    problems = []
    for index, doc in enumerate(docs):
        split = getattr(doc, "split", "train")
        if split not in SPLITS:
            problems.append(
                Problem(f"document {index}", f"unknown split {split!r}; allowed: {', '.join(SPLITS)}")
            )
        by_split[split].append((index, doc))
    if problems:
        raise DataError("request", problems)
    result = {}
    for split in SPLITS:
        if split not in by_split and split not in required:
            continue
        records = _records(by_split.get(split, []), split, csv_options)
        validate_labeled(records, split, min_items_per_class if split == "train" else 1)
        result[split] = records
    return result


def _records(indexed_docs: list, split: str, csv_options: CSVOptions) -> list[LabeledText]:
    records: list[LabeledText] = []
    items = [(i, doc) for i, doc in indexed_docs if getattr(doc, "kind", "item") == "item"]
    for _, doc in indexed_docs:
        if getattr(doc, "kind", "item") == "csv":
            records.extend(read_labeled_csv(doc.blob or b"", doc.name or "data.csv", csv_options))
    _check_modalities(items, split)
    records.extend(
        LabeledText(text=doc.text, label=doc.finetuner_label, source=f"{split} document {i}")
        for i, doc in items
    )
    return records


def modality(doc) -> str:
    """``text``, ``image``, ``text+image`` or ``none`` from which fields a document fills."""
    has_text = getattr(doc, "text", None) is not None
    has_image = getattr(doc, "uri", None) is not None or getattr(doc, "tensor", None) is not None
    return {(True, False): "text", (False, True): "image", (True, True): "text+image"}.get(
        (has_text, has_image), "none"
    )


def _check_modalities(items: list, split: str) -> None:
    """Labeled text items are all this path takes: a mix of modalities or an image is refused."""
    kinds = {i: modality(doc) for i, doc in items}
    present = sorted(set(kinds.values()) - {"none"})
    if len(present) > 1:
        first = {kind: next(i for i, k in kinds.items() if k == kind) for kind in present}
        summary = ", ".join(f"{kind} (e.g. document {i})" for kind, i in first.items())
        raise DataError(
            split, [Problem(split, f"mixed modalities: {summary}; a data set holds one modality")]
        )
    problems = [
        Problem(f"{split} document {i}", "holds an image; labeled training here takes text (field 'text')")
        for i, kind in kinds.items()
        if kind in ("image", "text+image")
    ]
    if problems:
        raise DataError(split, problems)
