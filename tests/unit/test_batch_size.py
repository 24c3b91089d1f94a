import numpy as np
import pytest
import torch

from conftest import banking77_slice
from finetuner_core.config import ConfigError, FitConfig, parse_fit_config
from finetuner_core.models import build_model
from finetuner_core.training import batch_size as search
from finetuner_core.training.loop import _probe, choose_batch_size, train
from finetuner_core.training.precision import Precision
from finetuner_protocol.data import LabeledItem

MLP = {"input_dim": 8, "hidden_dims": [32, 16]}


def vectors(n: int = 64, classes: int = 4) -> list[LabeledItem]:
    rng = np.random.default_rng(0)
    return [LabeledItem(rng.normal(size=8).astype(np.float32), str(i % classes)) for i in range(n)]


def mlp_config(**fields) -> FitConfig:
    base = dict(model="mlp", model_options=MLP, batch_size=None, num_items_per_class=2, device="cpu")
    return FitConfig(**{**base, **fields})


def weights(model) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize(
    "start,cap,data,multiple,expected",
    [
        (8, 128, 1000, 1, [8, 16, 32, 64, 128]),
        (8, 128, 48, 4, [8, 16, 32]),
        (8, 128, 1000, 3, [6, 15, 30, 63, 126]),
        (2, 512, 10, 1, [2, 4, 8]),
        (8, 128, 5, 2, [4]),  # the data is smaller than the first size: the smallest valid one
    ],
)
def test_candidate_sizes_are_powers_of_two_within_the_cap_and_the_data(start, cap, data, multiple, expected):
    sizes = search.candidate_sizes(start, cap, data, multiple)
    assert sizes == expected and all(size % multiple == 0 for size in sizes)


def test_batch_size_is_optional_and_checked_when_set():
    assert FitConfig(batch_size=None, num_items_per_class=3).batch_size is None
    with pytest.raises(ConfigError, match="batch_size \\(6\\) must be a multiple of num_items_per_class \\(4\\)"):
        parse_fit_config({"batch_size": 6, "num_items_per_class": 4})
    with pytest.raises(ConfigError, match="batch_size: Input should be greater than or equal to 2"):
        parse_fit_config({"batch_size": 1})


# --- CPU: the fastest size, by real steps ----------------------------------------------------------------------


def test_a_training_without_a_batch_size_searches_one_uses_it_and_says_so():
    model = build_model("mlp", MLP, "cpu")
    state = train(model, vectors(classes=16), mlp_config(max_steps=2))  # up to 16 classes x 2 items a batch
    assert state.batch_size in (8, 16, 32) and state.step == 2
    note = next(n for n in state.notes if n.startswith("batch_size chosen"))
    assert note.startswith(f"batch_size chosen: {state.batch_size}, the fastest on this CPU (items/s by size: 8: ")


def test_the_search_leaves_the_weights_and_the_mode_as_they_were():
    model = build_model("mlp", MLP, "cpu").eval()
    before = weights(model)
    choice = choose_batch_size(model, vectors(), mlp_config(num_items_per_class=4))
    assert choice.batch_size % 4 == 0 and choice.batch_size in choice.rates
    assert list(choice.rates) == [8, 16, 32, 64][: len(choice.rates)]
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not model.training and all(p.grad is None for p in model.parameters())


def test_the_search_stops_when_the_data_gives_no_larger_batch():
    two_classes = vectors(classes=2)  # the class sampler draws 2 classes x 2 items whatever the size
    choice = choose_batch_size(build_model("mlp", MLP, "cpu"), two_classes, mlp_config())
    assert choice.batch_size == 8 and list(choice.rates) == [8, 16]


def test_the_search_stops_at_the_memory_budget():
    model, config = build_model("mlp", MLP, "cpu"), mlp_config()
    probe = _probe(model, vectors(), config, Precision.for_device("fp32", "cpu"))
    choice = search.fastest(probe, [8, 16, 32], memory_budget=search.resident_memory() // 2)
    assert choice.batch_size == 8 and list(choice.rates) == [8]


def test_memory_readings_are_plausible():
    resident, peak = search.resident_memory(), search.peak_memory()
    assert 10 * 2**20 < resident <= peak * 1.01 and search.available_memory() > 0


@pytest.mark.slow
def test_the_search_on_minilm_with_a_tiny_cap(data_dir):
    records = [LabeledItem(t, label) for t, label in banking77_slice(data_dir, "train", classes=6, per_class=8)]
    model = build_model("all-MiniLM-L6-v2", None, "cpu")
    before = weights(model)
    choice = choose_batch_size(model, records, FitConfig(batch_size=None, num_items_per_class=4), cap=16)
    assert choice.batch_size in (8, 16) and set(choice.rates) <= {8, 16}
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


# --- CUDA: the largest size that fits (the halving, with a step that runs out of memory above a size) -----------


def out_of_memory_above(limit: int, tried: list[int]):
    def probe(size: int) -> int:
        tried.append(size)
        if size > limit:
            raise torch.cuda.OutOfMemoryError(f"CUDA out of memory at batch size {size}")
        return size

    return probe


def test_on_cuda_the_largest_power_of_two_that_fits_is_found_by_halving():
    tried = []
    choice = search.largest_that_fits(out_of_memory_above(100, tried), search.candidate_sizes(2, 512, 10_000))
    assert choice.batch_size == 64 and tried == [512, 256, 128, 64] and choice.too_large == [512, 256, 128]
    assert choice.note() == (
        "batch_size chosen: 64, the largest power of two that fits in GPU memory (512, 256, 128 ran out of memory)"
    )
    with pytest.raises(RuntimeError, match="runs out of GPU memory even at batch_size=2"):
        search.largest_that_fits(out_of_memory_above(1, []), [2, 4, 8])
