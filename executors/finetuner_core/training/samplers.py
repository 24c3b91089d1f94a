"""Batch samplers. Each owns its random generator, seeded with ``seed + epoch``."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass


class ClassBatchSampler:
    """Batches of ``num_items_per_class`` items from each of ``batch_size // num_items_per_class`` classes.

    Every item in a batch has at least one positive (same class) and one negative (other class), which is
    what triplet mining and label-aware contrastive losses need. Classes are drawn at random for each batch;
    items of a class are drawn without replacement until the class is used up, then reshuffled. A class with
    fewer items than ``num_items_per_class`` gives all it has. An epoch is ``len(labels) // batch_size``
    batches (at least one).
    """

    def __init__(self, labels: list[str], batch_size: int, num_items_per_class: int, seed: int = 0):
        if num_items_per_class < 2:
            raise ValueError(f"num_items_per_class must be at least 2, got {num_items_per_class}")
        if batch_size < 2 * num_items_per_class:
            raise ValueError(f"batch_size ({batch_size}) must hold 2 classes of {num_items_per_class} items")
        self.members: dict[str, list[int]] = {}
        for index, label in enumerate(labels):
            self.members.setdefault(label, []).append(index)
        if len(self.members) < 2:
            raise ValueError("the class sampler needs at least 2 classes")
        self.batch_size = batch_size
        self.items_per_class = num_items_per_class
        self.classes_per_batch = min(batch_size // num_items_per_class, len(self.members))
        self.num_batches = max(1, len(labels) // batch_size)
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_batches

    def __iter__(self) -> Iterator[list[int]]:
        rng = random.Random(self.seed + self.epoch)
        queues: dict[str, list[int]] = {label: [] for label in self.members}
        classes = sorted(self.members)
        for _ in range(self.num_batches):
            chosen = rng.sample(classes, self.classes_per_batch)
            yield [index for label in chosen for index in self._take(label, queues[label], rng)]

    def _take(self, label: str, queue: list[int], rng: random.Random) -> list[int]:
        members = self.members[label]
        picked: list[int] = []
        while len(picked) < min(self.items_per_class, len(members)):
            if not queue:
                queue.extend(rng.sample(members, len(members)))
            index = queue.pop()
            if index not in picked:
                picked.append(index)
        return picked


class RandomBatchSampler:
    """Shuffled batches of ``batch_size`` items, labels ignored (for in-batch negatives on many classes)."""

    def __init__(self, labels: list[str], batch_size: int, num_items_per_class: int = 0, seed: int = 0):
        if len(labels) < 2 or batch_size < 2:
            raise ValueError("the random sampler needs at least 2 items and batch_size >= 2")
        self.size = len(labels)
        self.batch_size = min(batch_size, self.size)
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return max(1, self.size // self.batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        order = random.Random(self.seed + self.epoch).sample(range(self.size), self.size)
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            yield order[start : start + self.batch_size]


class NoDuplicatesBatchSampler:
    """Shuffled batches in which no two items share a key (a label, or a caption for text-image pairs).

    For in-batch negatives: two items with the same key in one batch would be counted as each other's negatives.
    An item that does not fit the current batch waits for the next one; an epoch is as many full batches as the
    keys allow (at least one), and a batch holds at most as many items as there are distinct keys.
    """

    def __init__(self, labels: list[str], batch_size: int, num_items_per_class: int = 0, seed: int = 0):
        if len(set(labels)) < 2 or batch_size < 2:
            raise ValueError("the no-duplicates sampler needs at least 2 distinct keys and batch_size >= 2")
        self.labels = list(labels)
        self.batch_size = min(batch_size, len(set(labels)))
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return max(1, len(self.labels) // self.batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        waiting = random.Random(self.seed + self.epoch).sample(range(len(self.labels)), len(self.labels))
        for _ in range(len(self)):
            batch, keys, rest = [], set(), []
            for index in waiting:
                if len(batch) < self.batch_size and self.labels[index] not in keys:
                    batch.append(index)
                    keys.add(self.labels[index])
                else:
                    rest.append(index)
            waiting = rest
            if len(batch) < 2:
                return
            yield batch


@dataclass(frozen=True)
class SamplerSpec:
    name: str
    build: Callable[..., ClassBatchSampler | RandomBatchSampler | NoDuplicatesBatchSampler]
    description: str


SAMPLERS: dict[str, SamplerSpec] = {
    spec.name: spec
    for spec in [
        SamplerSpec("class", ClassBatchSampler, "num_items_per_class items from each of several classes"),
        SamplerSpec("random", RandomBatchSampler, "shuffled batches, labels ignored"),
        SamplerSpec(
            "no-duplicates", NoDuplicatesBatchSampler, "shuffled batches with no key twice (in-batch negatives)"
        ),
    ]
}
