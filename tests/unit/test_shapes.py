"""Every data shape has its entry in every layer that reads the shapes' table, and its records survive the trip
through item documents and stored rows.

A new shape registered in ``finetuner_protocol.shapes.SHAPES`` fails here until each layer knows it: its readers
(CSV rows, item documents, stored rows) and checks, its default loss (a loss of the core's that trains on it),
the core's training task, trial batch and evaluation routine, its monitor and its model-card text.
"""

import dataclasses

import numpy as np
import pytest
from PIL import Image

from finetuner_core.evaluation.dataset import EVAL_SETS
from finetuner_core.evaluation.routines import EVALUATIONS
from finetuner_core.runs.model_card import data_summary
from finetuner_core.training.losses import DEFAULT_LOSSES, LOSSES, TRIAL_INPUTS, check_options
from finetuner_core.training.tasks import TASKS, Task
from finetuner_protocol.data.csv_reader import CSVOptions
from finetuner_protocol.data.errors import DataError
from finetuner_protocol.data.intake import parse_data
from finetuner_protocol.data.records import (
    LABELED,
    QUERY_DOC,
    SCORED,
    TEXT_IMAGE,
    LabeledItem,
    PairItem,
    QueryDocItem,
    ScoredPairItem,
)
from finetuner_protocol.metrics import CORRELATIONS, is_monitor
from finetuner_protocol.shapes import CORRELATION, RANK, SHAPES, doc_shape, from_row, row_shape, shape_of, to_row
from finetuner_protocol.wire import record_docs


def image(shade: int) -> Image.Image:
    return Image.new("RGB", (16, 16), (shade, 255 - shade, 40))


SAMPLES = {
    LABELED: [LabeledItem(f"text {i}", f"class {i % 2}") for i in range(4)],
    TEXT_IMAGE: [PairItem(f"caption {i}", image(60 * i)) for i in range(4)],
    QUERY_DOC: [QueryDocItem(f"query {i}", f"document {i}") for i in range(4)],
    SCORED: [ScoredPairItem(f"text {i}", f"other {i}", float(i)) for i in range(4)],
}


ROWS = {  # the first sample as the cells of a CSV row, in the shape's column order
    LABELED: ["text 0", "class 0"],
    TEXT_IMAGE: [image(0), "caption 0"],
    QUERY_DOC: ["query 0", "document 0"],
    SCORED: ["text 0", "other 0", " 0 "],
}


def fields(record) -> tuple:
    """A record's values without its source, images and vectors as lists."""
    values = dataclasses.astuple(dataclasses.replace(record, source=""))
    return tuple(np.asarray(v).tolist() if isinstance(v, Image.Image | np.ndarray) else v for v in values)


def test_every_shape_has_samples_here():
    assert set(SAMPLES) == set(ROWS) == set(SHAPES)
    for name, records in SAMPLES.items():
        assert shape_of(records) is SHAPES[name]


@pytest.mark.parametrize("name", list(SHAPES))
def test_the_protocol_entries_of_a_shape(name):
    shape, records = SHAPES[name], SAMPLES[name]
    assert shape.name == name == shape.record.shape and shape.description
    first = records[0]
    assert len(ROWS[name]) == len(shape.columns)
    read = shape.read_row("data.csv row 2", ROWS[name])
    assert fields(read) == fields(first) and read.source == "data.csv row 2"
    assert row_shape(shape.to_row(first, lambda picture: "image.png")) is shape
    shape.validate(records, "train", 1, True)
    with pytest.raises(DataError, match="the data set is empty"):
        shape.validate([], "train", 1, True)
    assert shape.holds(first) and shape.modality(first) in ("text", "image", "vector", "text-image")
    assert all(isinstance(value, str) for value in shape.text_columns(first).values())


@pytest.mark.parametrize("name", list(SHAPES))
def test_the_default_loss_and_the_losses_of_a_shape_are_the_cores(name):
    shape = SHAPES[name]
    assert DEFAULT_LOSSES[name] == shape.default_loss in shape.losses
    assert shape.losses == tuple(loss for loss, spec in LOSSES.items() if spec.shape == name)
    check_options(LOSSES, shape.default_loss, {})  # built and run on a trial batch of this shape
    assert name in TRIAL_INPUTS


@pytest.mark.parametrize("name", list(SHAPES))
def test_the_core_trains_and_evaluates_every_shape(name):
    shape = SHAPES[name]
    assert issubclass(TASKS[name], Task)
    assert callable(EVALUATIONS[name])
    assert (name in EVAL_SETS) == (shape.metrics == RANK) == (shape.eval_sizes is not None)
    if shape.eval_sizes is not None:
        queries, index, _ = shape.eval_sizes(SAMPLES[name])
        eval_set = EVAL_SETS[name](SAMPLES[name])
        assert (len(eval_set.queries), len(eval_set.index_inputs)) == (queries, index)


@pytest.mark.parametrize("name", list(SHAPES))
def test_the_monitor_and_the_model_card_text_of_a_shape(name):
    shape = SHAPES[name]
    assert shape.metrics in (RANK, CORRELATION)
    assert is_monitor(shape.default_monitor) and shape.measures(shape.default_monitor) and shape.measures("loss")
    assert all(shape.measures(c) for c in CORRELATIONS) == (shape.metrics == CORRELATION)
    assert shape.default_monitor in shape.reports or shape.metrics == CORRELATION
    assert "{count}" in shape.card_evaluation
    column, field = shape.card_counts
    assert field in {f.name for f in dataclasses.fields(shape.record)}
    assert data_summary({"train": SAMPLES[name]})["train"][column] == len({getattr(r, field) for r in SAMPLES[name]})


@pytest.mark.parametrize("name", list(SHAPES))
def test_records_survive_item_documents_and_stored_rows(name):
    records = SAMPLES[name]
    docs = list(record_docs({"train": records}))
    if SHAPES[name].doc_marks:
        assert all(doc_shape(doc) is SHAPES[name] for doc in docs)
    modality = SHAPES[name].modality(records[0])
    back = parse_data(docs, modality, CSVOptions(), min_items_per_class=1)["train"]
    assert [fields(record) for record in back] == [fields(record) for record in records]
    assert [record.source for record in back] == [f"train document {i}" for i in range(len(records))]
    images: dict[str, Image.Image] = {}

    def save(picture: Image.Image) -> str:
        images[f"{len(images)}.png"] = picture
        return f"{len(images) - 1}.png"

    stored = [from_row(to_row(record, save), images.__getitem__) for record in records]
    assert [fields(record) for record in stored] == [fields(record) for record in records]


def test_labeled_images_and_vectors_survive_item_documents():
    pictures = [LabeledItem(image(60 * i), f"class {i % 2}") for i in range(4)]
    vectors = [LabeledItem(np.arange(3, dtype=np.float32) + i, f"class {i % 2}") for i in range(4)]
    for records, modality in ((pictures, "image"), (vectors, "vector")):
        back = parse_data(list(record_docs({"train": records})), modality, CSVOptions(), min_items_per_class=1)
        assert [fields(record) for record in back["train"]] == [fields(record) for record in records]
