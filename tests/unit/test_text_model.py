"""The text model runs a batch packed (or in length groups): the same embeddings and gradients as one padded pass."""

import itertools
import random

import numpy as np
import pytest
import torch

from conftest import banking77_slice
from finetuner_core.models import build_model
from finetuner_core.models.families.text import BATCHING, _trimmed, length_groups, pack_rows, pack_tokens

MODES = ("packed", "grouped")


@pytest.fixture(scope="module")
def texts(data_dir) -> list[str]:
    """Banking77 texts of very different lengths (5 to 60+ tokens), in no particular order."""
    rows = [text for text, _ in banking77_slice(data_dir, "train", classes=10, per_class=2)]
    return rows + ["I " + "really " * 40 + "need to know why my card payment was declined twice today"]


def embeddings(model, texts: list[str], batching: str) -> np.ndarray:
    model.batching = batching
    try:
        return model.encode(texts)
    finally:
        model.batching = "auto"


def test_the_packaged_model_packs_and_a_batch_needs_far_fewer_tokens(minilm, texts):
    lengths = minilm.preprocess(texts)["attention_mask"].sum(dim=1).tolist()
    assert minilm.batching_mode() == "packed"
    padded = len(lengths) * max(lengths)
    for batching in MODES:
        minilm.batching = batching
        shapes = minilm.forward_shapes(lengths)
        assert sum(lengths) <= sum(rows * width for rows, width in shapes) < padded / 2
    minilm.batching = "padded"
    assert minilm.forward_shapes(lengths) == [(len(lengths), max(lengths))]
    minilm.batching = "auto"


@pytest.mark.parametrize("pooling", ["mean", "max", "cls"])
def test_embeddings_are_those_of_one_padded_pass_and_of_each_text_alone(pooling, minilm, texts):
    model = minilm if pooling == "mean" else build_model("all-MiniLM-L6-v2", {"pooling": pooling}, "cpu")
    padded = embeddings(model, texts, "padded")
    some = [0, 1, 2, len(texts) - 1]  # the longest text is the last
    alone = np.concatenate([embeddings(model, [texts[i]], "padded") for i in some])
    np.testing.assert_allclose(padded[some], alone, atol=2e-5)
    for batching in MODES:
        np.testing.assert_allclose(embeddings(model, texts, batching), padded, atol=2e-5, err_msg=batching)
    assert np.abs(padded - np.roll(padded, 1, axis=0)).max() > 0.1, "the rows differ: their order is checked"


def test_a_projection_head_sees_the_same_features(texts):
    model = build_model("all-MiniLM-L6-v2", {"output_dim": 16, "normalize": False}, "cpu")
    np.testing.assert_allclose(embeddings(model, texts, "packed"), embeddings(model, texts, "padded"), atol=2e-5)


@pytest.mark.parametrize("batching", MODES)
def test_gradients_are_those_of_one_padded_pass(batching, minilm, texts):
    minilm.eval()  # no dropout: every mode computes the same function
    weights = torch.randn(len(texts), minilm.dim, generator=torch.Generator().manual_seed(0))
    grads = []
    for mode in (batching, "padded"):
        minilm.batching = mode
        minilm.zero_grad(set_to_none=True)
        (minilm.embed(texts) * weights).sum().backward()
        grads.append({n: p.grad.clone() for n, p in minilm.named_parameters() if p.grad is not None})
    minilm.batching = "auto"
    minilm.zero_grad(set_to_none=True)
    assert grads[0].keys() == grads[1].keys() and len(grads[0]) > 50
    for name in grads[0]:
        torch.testing.assert_close(grads[0][name], grads[1][name], atol=1e-5, rtol=1e-3, msg=name)


def test_training_mode_trains_with_packed_batches(minilm, texts):
    minilm.train()
    try:
        out = minilm.embed(texts)
        out.sum().backward()
    finally:
        minilm.eval()
        minilm.zero_grad(set_to_none=True)
    assert out.shape == (len(texts), minilm.dim) and torch.isfinite(out).all()
    torch.testing.assert_close(out.norm(dim=1), torch.ones(len(texts)))


def test_an_encoder_that_cannot_pack_runs_in_length_groups(minilm, texts):
    tokenizer = minilm.st[0].tokenizer
    tokenizer.padding_side = "left"  # positions would shift with left padding: packing is refused
    try:
        assert not minilm.packable() and minilm.batching_mode() == "grouped"
        minilm.batching = "packed"
        with pytest.raises(ValueError, match="packed"):
            minilm.batching_mode()
    finally:
        tokenizer.padding_side = "right"
        minilm.batching = "auto"
    assert minilm.packable()


def test_an_unknown_batching_is_refused(minilm):
    minilm.batching = "sorted"
    try:
        with pytest.raises(ValueError, match=", ".join(BATCHING)):
            minilm.batching_mode()
    finally:
        minilm.batching = "auto"


def test_a_frozen_backbone_gets_no_gradients(texts):
    model = build_model("all-MiniLM-L6-v2", {"freeze": True, "output_dim": 8}, "cpu")
    model.embed(texts).sum().backward()
    with_grads = {n for n, p in model.named_parameters() if p.grad is not None}
    assert with_grads and all(not n.startswith("st.0.") for n in with_grads)


@pytest.mark.parametrize("seed", range(10))
def test_packed_rows_hold_every_text_once_within_the_capacity(seed):
    rng = random.Random(seed)
    lengths = [rng.randint(3, 60) for _ in range(rng.randint(1, 64))]
    rows = pack_rows(lengths, max(lengths))
    assert sorted(i for row in rows for i in row) == list(range(len(lengths)))
    assert all(sum(lengths[i] for i in row) <= max(lengths) for row in rows)
    assert len(rows) <= 2 * sum(lengths) / max(lengths) + 1, "first fit never leaves two rows half empty"


def test_packed_inputs_restart_positions_and_keep_each_text_to_itself():
    ids = torch.tensor([[101, 7, 8, 102], [101, 9, 102, 0], [101, 102, 0, 0]])
    mask = (ids > 0).long()
    features = {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids)}
    lengths = mask.sum(dim=1).tolist()
    rows = pack_rows(lengths, 5)
    assert rows == [[0], [1, 2]]
    inputs, (item, position), (row, column) = pack_tokens(features, lengths, rows, 5)
    assert inputs["input_ids"].tolist() == [[101, 7, 8, 102, 0], [101, 9, 102, 101, 102]]
    assert inputs["position_ids"].tolist() == [[0, 1, 2, 3, 0], [0, 1, 2, 0, 1]]
    shared = inputs["attention_mask"][1, 0]
    assert shared[:3, :3].all() and shared[3:, 3:].all() and not shared[:3, 3:].any() and not shared[3:, :3].any()
    alone = inputs["attention_mask"][0, 0]
    assert alone[:4, :4].all() and not alone[:4, 4].any() and alone[4].tolist() == [False] * 4 + [True]
    assert torch.equal(inputs["input_ids"][row, column], ids[item, position])


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
