from collections import Counter

import pytest

from finetuner_core.training.samplers import SAMPLERS, ClassBatchSampler

LABELS = [f"class{i % 7}" for i in range(70)] + ["small", "small", "small"]


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_every_sampler_yields_valid_batches_reproducibly(name):
    sampler = SAMPLERS[name].build(LABELS, 12, 4, seed=3)
    batches = list(sampler)
    assert len(batches) == len(sampler) >= 1
    assert all(len(b) == len(set(b)) and all(0 <= i < len(LABELS) for i in b) for b in batches)
    assert batches == list(SAMPLERS[name].build(LABELS, 12, 4, seed=3))
    sampler.set_epoch(1)
    assert list(sampler) != batches


def test_class_sampler_gives_every_anchor_a_positive_and_a_negative():
    sampler = ClassBatchSampler(LABELS, batch_size=16, num_items_per_class=4, seed=0)
    for epoch in range(5):
        sampler.set_epoch(epoch)
        for batch in sampler:
            labels = [LABELS[i] for i in batch]
            counts = Counter(labels)
            assert len(counts) == 4
            for label in labels:
                assert counts[label] >= 2, "a positive"
                assert len(labels) - counts[label] >= 1, "a negative"


def test_class_sampler_shape_and_small_classes():
    sampler = ClassBatchSampler(LABELS, batch_size=16, num_items_per_class=4, seed=0)
    assert len(sampler) == len(LABELS) // 16
    sizes = Counter(len(batch) for epoch in range(20) for batch in _epoch(sampler, epoch))
    assert set(sizes) <= {15, 16}, "the 3-item class gives all it has"


def test_class_sampler_covers_the_data():
    labels = [f"c{i % 10}" for i in range(200)]
    sampler = ClassBatchSampler(labels, batch_size=20, num_items_per_class=4, seed=1)
    seen = {i for epoch in range(3) for batch in _epoch(sampler, epoch) for i in batch}
    assert len(seen) > 0.9 * len(labels)


def test_class_sampler_with_fewer_classes_than_a_batch_holds():
    sampler = ClassBatchSampler(["a", "a", "b", "b", "b"], batch_size=32, num_items_per_class=4, seed=0)
    assert [sorted(b) for b in sampler] == [[0, 1, 2, 3, 4]]


@pytest.mark.parametrize(
    "labels,batch_size,k,message",
    [
        (["a", "a"], 8, 2, "at least 2 classes"),
        (LABELS, 6, 4, "must hold 2 classes"),
        (LABELS, 8, 1, "at least 2"),
    ],
)
def test_class_sampler_refuses_impossible_settings(labels, batch_size, k, message):
    with pytest.raises(ValueError, match=message):
        ClassBatchSampler(labels, batch_size, k)


def _epoch(sampler, epoch):
    sampler.set_epoch(epoch)
    return list(sampler)


def test_no_duplicates_sampler_never_repeats_a_key_in_a_batch():
    from finetuner_core.training.samplers import NoDuplicatesBatchSampler

    keys = [f"caption {i % 5}" for i in range(40)]
    sampler = NoDuplicatesBatchSampler(keys, batch_size=8, seed=1)
    batches = list(sampler)
    assert sampler.batch_size == 5 and len(batches) == len(sampler) == 8
    for batch in batches:
        assert len({keys[i] for i in batch}) == len(batch) == 5
    assert sorted(i for b in batches for i in b) == list(range(40)), "every item once per epoch"
