"""The text model runs a batch in groups of similar length: the same embeddings and gradients as one padded pass."""

import itertools
import random

import numpy as np
import pytest
import torch

from conftest import banking77_slice
from finetuner_core.models import build_model
from finetuner_core.models.text import _trimmed, length_groups


@pytest.fixture(scope="module")
def texts(data_dir) -> list[str]:
    """Banking77 texts of very different lengths (5 to 60+ tokens), in no particular order."""
    rows = [text for text, _ in banking77_slice(data_dir, "train", classes=10, per_class=2)]
    return rows + ["I " + "really " * 40 + "need to know why my card payment was declined twice today"]


def embeddings(model, texts: list[str], grouped: bool) -> np.ndarray:
    model.length_groups = grouped
    try:
        return model.encode(texts)
    finally:
        model.length_groups = True


def test_the_batch_really_runs_in_several_groups(minilm, texts):
    lengths = minilm.preprocess(texts)["attention_mask"].sum(dim=1).tolist()
    groups = length_groups(lengths)
    assert len(groups) > 1
    assert sum(len(g) * max(lengths[i] for i in g) for g in groups) < len(lengths) * max(lengths)


@pytest.mark.parametrize("pooling", ["mean", "max", "cls"])
def test_grouped_embeddings_are_those_of_one_padded_pass_and_of_each_text_alone(pooling, minilm, texts):
    model = minilm if pooling == "mean" else build_model("all-MiniLM-L6-v2", {"pooling": pooling}, "cpu")
    grouped = embeddings(model, texts, grouped=True)
    padded = embeddings(model, texts, grouped=False)
    some = [0, 1, 2, len(texts) - 1]  # the longest text is the last
    alone = np.concatenate([embeddings(model, [texts[i]], grouped=False) for i in some])
    np.testing.assert_allclose(grouped, padded, atol=2e-5)
    np.testing.assert_allclose(grouped[some], alone, atol=2e-5)
    assert np.abs(grouped - np.roll(grouped, 1, axis=0)).max() > 0.1, "the rows are in the input order"


def test_grouped_gradients_are_those_of_one_padded_pass(minilm, texts):
    minilm.eval()  # no dropout: both passes compute the same function
    weights = torch.randn(len(texts), minilm.dim, generator=torch.Generator().manual_seed(0))
    grads = []
    for grouped in (True, False):
        minilm.length_groups = grouped
        minilm.zero_grad(set_to_none=True)
        (minilm.embed(texts) * weights).sum().backward()
        grads.append({n: p.grad.clone() for n, p in minilm.named_parameters() if p.grad is not None})
    minilm.length_groups = True
    minilm.zero_grad(set_to_none=True)
    assert grads[0].keys() == grads[1].keys() and len(grads[0]) > 50
    for name in grads[0]:
        torch.testing.assert_close(grads[0][name], grads[1][name], atol=1e-5, rtol=1e-3, msg=name)


def test_a_frozen_backbone_gets_no_gradients(texts):
    model = build_model("all-MiniLM-L6-v2", {"freeze": True, "output_dim": 8}, "cpu")
    model.embed(texts).sum().backward()
    with_grads = {n for n, p in model.named_parameters() if p.grad is not None}
    assert with_grads and all(not n.startswith("st.0.") for n in with_grads)


def _cost(lengths: list[int], groups: list[list[int]], overhead: int) -> int:
    return sum(len(g) * max(lengths[i] for i in g) + overhead for g in groups)


@pytest.mark.parametrize("seed", range(20))
def test_length_groups_are_the_cheapest_cut_of_the_sorted_batch(seed):
    rng = random.Random(seed)
    lengths = [rng.randint(3, 60) for _ in range(rng.randint(1, 8))]
    overhead = rng.choice([0, 8, 40, 200])
    groups = length_groups(lengths, overhead)
    assert sorted(i for g in groups for i in g) == list(range(len(lengths)))
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    best = min(
        _cost(lengths, [order[a:b] for a, b in itertools.pairwise([0, *cuts, len(order)])], overhead)
        for size in range(len(order))
        for cuts in itertools.combinations(range(1, len(order)), size)
    )
    assert _cost(lengths, groups, overhead) == best


def test_length_groups_limits():
    assert length_groups([5, 9, 7], overhead=10**9) == [[0, 2, 1]]
    assert length_groups([5, 9, 5, 9], overhead=0) == [[0, 2], [1, 3]]
    assert length_groups([]) == []


def test_trimming_keeps_the_used_columns_on_either_padding_side():
    right = torch.tensor([[1, 1, 0, 0, 0], [1, 1, 1, 0, 0]])
    left = right.flip(1)
    for mask, kept in ((right, slice(0, 3)), (left, slice(2, 5))):
        ids = torch.arange(10).reshape(2, 5)
        out = _trimmed({"input_ids": ids, "attention_mask": mask, "modality": "text"}, mask)
        assert torch.equal(out["input_ids"], ids[:, kept]) and torch.equal(out["attention_mask"], mask[:, kept])
        assert out["modality"] == "text"
