"""Labeled vectors: NaN, infinities, arrays of more than one dimension, empty vectors and lengths that differ
(from each other, or from the MLP's input_dim) are refused naming the row, in the client and in the Flow."""

import numpy as np
import pytest
import torch

import finetuner
from finetuner_core.config import parse_fit_config
from finetuner_protocol.data.checks import check_fit_splits
from finetuner_protocol.data.csv_reader import CSVOptions
from finetuner_protocol.data.errors import DataError
from finetuner_protocol.data.intake import parse_data, parse_fit_data
from finetuner_protocol.data.records import LabeledItem
from finetuner_protocol.wire import FinetunerDoc

GOOD = [(np.full(4, i, dtype=np.float32), f"c{i % 2}") for i in range(4)]


def refused(data, **settings) -> list[str]:
    with pytest.raises(DataError) as error:
        finetuner.check_data(data, model="mlp", **settings)
    return str(error.value).splitlines()


def test_good_vectors_pass():
    assert finetuner.check_data(GOOD, model="mlp", input_dim=4)["train"] == {
        "items": 4,
        "shape": "vector",
        "classes": 2,
    }
    as_tensors = [(torch.tensor(vector).reshape(1, 4), label) for vector, label in GOOD]
    assert finetuner.check_data(as_tensors, model="mlp", input_dim=4)["train"]["items"] == 4


def test_nan_and_infinities_are_refused_with_their_position():
    data = [*GOOD, (np.array([1, np.nan, 2, 3]), "c0"), (np.array([1, 2, 3, -np.inf]), "c1")]
    assert refused(data, input_dim=4)[1:] == [
        "  train document 4: the vector holds nan at position 1; every number must be finite",
        "  train document 5: the vector holds -inf at position 3; every number must be finite",
    ]


def test_mixed_lengths_name_the_odd_vectors():
    data = [*GOOD, (np.ones(3), "c0")]
    assert refused(data)[1:] == [
        "  train document 4: the vector has 3 numbers; the other vectors of this data set have 4"
    ]
    data = [*GOOD[:2], (np.ones(5), "c0"), (np.ones(5), "c1"), (np.ones(5), "c1")]
    assert refused(data, input_dim=4)[1:] == [
        "  train document 0: the vector has 4 numbers; the other vectors of this data set have 5",
        "  train document 1: the vector has 4 numbers; the other vectors of this data set have 5",
    ]


def test_vectors_that_do_not_fit_input_dim_are_refused_in_one_line():
    assert refused(GOOD, input_dim=5)[1:] == [
        "  train document 0: the vector has 4 numbers, as do all 4, but input_dim is 5"
    ]
    assert refused(GOOD)[1:] == [
        "  input_dim: model 'mlp' needs model_options={'input_dim': 4}, the length of the vectors"
    ]
    eval_data = [(np.ones(5), "c0"), (np.zeros(5), "c1")]
    lines = refused(GOOD, eval_data=eval_data, input_dim=4, eval_ks=[1])
    assert lines[0] == "eval data rejected: 1 problem" and "as do all 2, but input_dim is 4" in lines[1]


def test_an_array_of_two_dimensions_or_none_is_not_flattened():
    assert refused([*GOOD, (np.ones((2, 2)), "c0")], input_dim=4)[1:] == [
        "  train document 4: a vector has one dimension; this array has shape (2, 2)"
    ]
    assert refused([*GOOD, (np.array([]), "c0")], input_dim=4)[1:] == ["  train document 4: the vector is empty"]


def test_the_flow_refuses_the_same_documents():
    docs = [FinetunerDoc(tensor=vector, finetuner_label=label) for vector, label in GOOD]
    docs.append(FinetunerDoc(tensor=np.array([0.0, np.inf, 0.0, 0.0]), finetuner_label="c0"))
    with pytest.raises(DataError, match=r"train document 4: the vector holds inf at position 1"):
        parse_data(docs, "vector", CSVOptions(), whole=False)
    config = parse_fit_config({"model": "mlp", "model_options": {"input_dim": 8}, "eval_ks": [1]})
    with pytest.raises(DataError, match="as do all 4, but input_dim is 8"):
        parse_fit_data(docs[:4], config)
    stored = {"train": [LabeledItem(np.ones(n, dtype=np.float32), f"c{i % 2}") for i, n in enumerate((8, 8, 8, 7))]}
    with pytest.raises(DataError, match="item 3: the vector has 7 numbers; the other vectors of this data set have 8"):
        check_fit_splits(stored, config)
    stored = {"train": [LabeledItem(np.ones(7, dtype=np.float32), f"c{i % 2}") for i in range(4)]}
    with pytest.raises(DataError, match="item 0: the vector has 7 numbers, as do all 4, but input_dim is 8"):
        check_fit_splits(stored, config)
