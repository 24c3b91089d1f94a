"""Whole-set checks of records that are already parsed: a stored dataset, and datasets named by a fit.

Rows are checked as they arrive (data.intake); what needs the whole set (at least two classes, items per class
for the sampler, the shape the model and loss take, an evaluation set deep enough for every k) is checked here.
"""

from __future__ import annotations

from finetuner_protocol.data.content_modality import check_text_columns
from finetuner_protocol.data.errors import DataError, Problem
from finetuner_protocol.data.fit_settings import settle_fit
from finetuner_protocol.shapes import SHAPES, validate_records


def shape(records: list) -> str:
    """What the records hold: ``text``, ``image`` or ``vector`` (labeled), ``text-image`` (pairs), ``query-doc``
    or ``scored`` (text pairs): their shape's ``holds``."""
    first = records[0]
    return SHAPES[first.shape].holds(first)


def check_dataset(records: list, name: str = "dataset") -> None:
    """One shape throughout, and what every dataset of that shape needs."""
    if not records:
        raise DataError(name, [Problem(name, "the data set is empty")])
    shapes = {shape([record]) for record in records}
    if len(shapes) > 1:
        raise DataError(name, [Problem(name, f"mixed shapes: {', '.join(sorted(shapes))}; a data set holds one")])
    _validate(records, name, min_items_per_class=1)


def check_fit_splits(splits: dict[str, list], config) -> None:
    """Datasets named by a fit suit its model, sampler and evaluation cut-offs (``config``: a FitConfig)."""
    for split, records in splits.items():
        found = shape(records) if records else "nothing"
        takes = SHAPES[records[0].shape].modality(records[0]) if records else found
        if takes != config.modality:
            raise DataError(
                split, [Problem(split, f"holds {found} data; model {config.model!r} takes {config.modality}")]
            )
    _validate(splits["train"], "train", min_items_per_class=2 if config.sampler == "class" else 1)
    if splits.get("eval"):
        _validate(splits["eval"], "eval", min_items_per_class=1)
    for split, records in splits.items():
        if config.modality == "text":
            check_text_columns(records, split, config.model)
    settle_fit(config, splits)  # the loss and monitor suit the data's shape; eval data deep enough for every k


def _validate(records: list, name: str, min_items_per_class: int) -> None:
    validate_records(records, name, min_items_per_class)
