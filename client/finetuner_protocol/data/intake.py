"""From what a user sent (item documents, CSV files and the image files they name) to validated records.

Works on duck-typed documents (anything with the attributes of :class:`finetuner_protocol.wire.FinetunerDoc`),
so it is tested without a Flow. What a split must hold follows from the model's modality:

- ``text`` / ``image`` / ``vector``: labeled items (``text``; an image in ``blob``/``uri``/``tensor``; a 1-d
  ``tensor``), or CSV rows ``text,label`` / ``image,label``
- ``text`` also: query-document pairs (``text`` and ``text_pair``; CSV rows ``query,document``) or scored pairs
  (``text``, ``text_pair`` and ``score``; CSV rows ``text,text,score``), see :mod:`.text_records`
- ``text-image``: unlabeled pairs (a document with ``text`` and an image), or CSV rows ``image,text``

Images named in a CSV come as ``kind="file"`` documents called by the path the CSV uses; nothing is read from
the server's disk. A data set is accepted whole or refused with one :class:`DataError`.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from finetuner_protocol.data.content_modality import check_image_column, check_text_columns
from finetuner_protocol.data.csv_reader import CSVOptions, read_csv_rows
from finetuner_protocol.data.errors import DataError, Problem
from finetuner_protocol.data.fit_settings import settle_fit
from finetuner_protocol.data.images import load_images, looks_like_image_reference
from finetuner_protocol.data.records import LABELED, TEXT_IMAGE, Record
from finetuner_protocol.data.text_records import text_records
from finetuner_protocol.data.vectors import VectorError, to_vector
from finetuner_protocol.shapes import SHAPES, validate_records

SPLITS = ("train", "eval")
Item = Record


def parse_fit_data(docs, config) -> dict[str, list[Item]]:
    """Training (required) and evaluation (optional) records for a fit with ``config`` (a FitConfig).

    The class sampler needs two items of a class in a batch, so it refuses classes with one item; the loss and
    the monitor must suit the data's shape (a fit without a loss gets the shape's default in ``config.loss``), and
    evaluation data must be large enough to be scored at every k of ``config.eval_ks`` (``settle_fit``).
    """
    modality = config.modality
    min_items = 2 if config.sampler == "class" else 1
    splits = parse_data(docs, modality, config.csv_options, min_items_per_class=min_items, model=config.model)
    settle_fit(config, splits)
    return splits


def parse_data(
    docs,
    modality: str,
    csv_options: CSVOptions,
    min_items_per_class: int = 2,
    required: tuple[str, ...] = ("train",),
    whole: bool = True,
    model: str | None = None,
) -> dict[str, list[Item]]:
    """Validated records per split (``train``/``eval``) for a model of ``modality`` (named ``model`` in messages,
    when given). ``whole=False`` checks rows only, for one batch of a dataset (the classes are checked when the
    whole dataset is there)."""
    docs = list(docs)
    files = {doc.name: doc.blob for doc in docs if getattr(doc, "kind", "item") == "file"}
    by_split = _by_split([(i, doc) for i, doc in enumerate(docs) if getattr(doc, "kind", "item") != "file"])
    result = {}
    for split in SPLITS:
        if split not in by_split and split not in required:
            continue
        records = _records(by_split.get(split, []), split, modality, csv_options, files, model)
        validate_records(records, split, min_items_per_class if split == "train" else 1, whole=whole)
        result[split] = records
    return result


def _by_split(indexed_docs: list) -> dict[str, list]:
    by_split: dict[str, list] = defaultdict(list)
    problems = []
    for index, doc in indexed_docs:
        split = getattr(doc, "split", "train")
        if split not in SPLITS:
            problems.append(Problem(f"document {index}", f"unknown split {split!r}; allowed: {', '.join(SPLITS)}"))
        by_split[split].append((index, doc))
    if problems:
        raise DataError("request", problems)
    return by_split


def _records(
    indexed_docs: list, split: str, modality: str, csv_options: CSVOptions, files: dict, model: str | None
) -> list[Item]:
    items = [(i, doc) for i, doc in indexed_docs if getattr(doc, "kind", "item") == "item"]
    if modality == "text":
        _check_modalities(items, split, modality)
        records = text_records(indexed_docs, split, csv_options)
        check_text_columns(records, split, model)
        return records
    raw: list[tuple[str, Any, Any]] = []  # (where, content or image value, label or text)
    for _, doc in indexed_docs:
        if getattr(doc, "kind", "item") == "csv":
            raw.extend(_csv_rows(doc, modality, csv_options, files, model))
    _check_modalities(items, split, modality)
    raw.extend(_item_row(doc, f"{split} document {i}", modality) for i, doc in items)
    return _build(raw, split, modality)


def _csv_rows(doc, modality: str, options: CSVOptions, files: dict, model: str | None) -> list[tuple[str, Any, Any]]:
    name = doc.name or "data.csv"
    if modality == "vector":
        raise DataError(name, [Problem(name, "vectors come as DocList tensors, not CSV files")])
    columns = {"image": "image, label", "text-image": "image, text"}[modality]
    rows = read_csv_rows(doc.blob or b"", name, options, columns)
    check_image_column(rows, name, modality, files, model)
    if modality == "image":
        return [(where, _attached(cells[0], files), cells[1]) for where, cells in rows]
    pairs = [_pair_cells(where, cells, files) for where, cells in rows]
    reason = "a text-image row needs one image path (or data URI) and one text"
    problems = [Problem(where, reason) for (where, _), pair in zip(rows, pairs, strict=True) if pair is None]
    if problems:
        raise DataError(name, problems)
    return pairs


def _pair_cells(where: str, cells: list[str], files: dict) -> tuple[str, Any, Any] | None:
    """``(where, image, text)``; None for a row without exactly one image reference."""
    is_image = [looks_like_image_reference(cell) for cell in cells]
    if is_image.count(True) != 1:
        return None
    image, text = (cells[0], cells[1]) if is_image[0] else (cells[1], cells[0])
    return where, _attached(image, files), text


def _attached(reference: str, files: dict, missing: str = "not sent with the CSV file") -> Any:
    """An image reference: a data URI as it is, else the bytes of the file sent with the request."""
    if reference.strip().lower().startswith("data:"):
        return reference
    return files.get(reference, _Missing(reference, missing))


class _Missing:
    """An image that is named but was not sent; nothing is read from the server's disk."""

    def __init__(self, reference: str, reason: str):
        self.reference = reference
        self.reason = reason

    def __repr__(self) -> str:
        return f"image {self.reference!r} ({self.reason})"


def _item_row(doc, where: str, modality: str) -> tuple[str, Any, Any]:
    if modality == "vector":
        return where, doc.tensor, doc.finetuner_label
    if doc.blob is not None:
        image = doc.blob
    elif doc.uri is not None:
        image = _attached(doc.uri, {}, "a path is read by the client: send the image bytes in 'blob'")
    else:
        image = doc.tensor
    return (where, image, doc.text) if modality == "text-image" else (where, image, doc.finetuner_label)


def _build(raw: list[tuple[str, Any, Any]], split: str, modality: str) -> list[Item]:
    if modality == "vector" and any(value is None for _, value, _ in raw):
        raise DataError(split, [Problem(w, "the vector (field 'tensor') is missing") for w, v, _ in raw if v is None])
    if modality == "vector":
        return _vector_items(raw, split)
    problems = [Problem(where, f"{value!r}") for where, value, _ in raw if isinstance(value, _Missing)]
    present = [(where, value) for where, value, _ in raw if not isinstance(value, _Missing)]
    try:
        images = load_images([value for _, value in present], [where for where, _ in present], dataset=split)
    except DataError as error:
        problems += error.problems
    if problems:
        raise DataError(split, sorted(problems, key=lambda p: [w for w, _, _ in raw].index(p.where)))
    shape = SHAPES[TEXT_IMAGE if modality == "text-image" else LABELED]  # its rows: (image, label) / (image, text)
    return [shape.read_row(where, [image, value]) for image, (where, _, value) in zip(images, raw, strict=True)]


def _vector_items(raw: list[tuple[str, Any, Any]], split: str) -> list[Item]:
    items, problems = [], []
    for where, value, label in raw:
        try:
            items.append(SHAPES[LABELED].read_row(where, [to_vector(value), label]))
        except VectorError as exc:
            problems.append(Problem(where, str(exc)))
    if problems:
        raise DataError(split, problems)
    return items


def modality(doc) -> str:
    """``text``, ``image``, ``text+image`` or ``none`` from which fields a document fills."""
    has_text = getattr(doc, "text", None) is not None
    has_image = any(getattr(doc, field, None) is not None for field in ("uri", "tensor", "blob"))
    return {(True, False): "text", (False, True): "image", (True, True): "text+image"}.get(
        (has_text, has_image), "none"
    )


def _check_modalities(items: list, split: str, expected: str) -> None:
    """One modality per data set, and the one the model takes."""
    kinds = {i: modality(doc) for i, doc in items}
    present = sorted(set(kinds.values()) - {"none"})
    if len(present) > 1:
        first = {kind: next(i for i, k in kinds.items() if k == kind) for kind in present}
        summary = ", ".join(f"{kind} (e.g. document {i})" for kind, i in first.items())
        raise DataError(split, [Problem(split, f"mixed modalities: {summary}; a data set holds one modality")])
    wanted = {"text": "text", "image": "image", "vector": "image", "text-image": "text+image"}[expected]
    problems = [
        Problem(f"{split} document {i}", f"holds {kind}; this model takes {_describe(expected)}")
        for i, kind in kinds.items()
        if kind not in (wanted, "none")
    ]
    if problems:
        raise DataError(split, problems)


def _describe(expected: str) -> str:
    return {
        "text": "text (field 'text')",
        "image": "an image (field 'blob', 'uri' or 'tensor')",
        "vector": "a vector (field 'tensor')",
        "text-image": "text-image pairs (fields 'text' and an image)",
    }[expected]
