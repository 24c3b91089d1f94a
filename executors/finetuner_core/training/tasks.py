"""What one training step computes, by the shape of the data: labeled items or text-image pairs.

A task owns its sampler and its loss; the loop only asks it for batches and for the loss of a batch.
"""

from __future__ import annotations

import math
from collections import Counter

import torch

from finetuner_core.config import FitConfig
from finetuner_core.data.records import LabeledItem, PairItem
from finetuner_core.training import losses
from finetuner_core.training.samplers import SAMPLERS, NoDuplicatesBatchSampler, RandomBatchSampler


class Task:
    """A task's sampler draws batches; ``loss`` is the loss of one batch. ``backward`` back-propagates
    ``loss * scale`` and returns its value without back-propagating a non-finite one; a task that computes
    gradients another way (e.g. in chunks, to keep memory constant) overrides it."""

    sampler: object
    optimizers: list[torch.optim.Optimizer]
    notes: list[str]

    def loss(self, model, batch: list[int]) -> torch.Tensor:
        raise NotImplementedError

    def backward(self, model, batch: list[int], scale: float) -> float:
        loss = self.loss(model, batch) * scale
        value = float(loss.detach())
        if math.isfinite(value):
            loss.backward()
        return value


class LabeledTask(Task):
    """Class-sampled batches; the loss (with its miner) builds triplets or in-batch negatives from labels."""

    def __init__(self, records: list[LabeledItem], config: FitConfig, model=None):
        labels = [record.label for record in records]
        self.contents = [record.content for record in records]
        ids = {label: i for i, label in enumerate(sorted(set(labels)))}
        self.class_ids = torch.tensor([ids[label] for label in labels])
        self.sampler = SAMPLERS[config.sampler].build(
            labels, config.batch_size, config.num_items_per_class, seed=config.seed
        )
        dim = model.dim if model is not None else 2
        self.loss_fn = losses.build(losses.LOSSES, config.loss_name, config.loss_options, len(ids), dim)
        self.miner = losses.build(losses.MINERS, config.miner, config.miner_options) if config.uses_miner else None
        self.optimizers = _loss_optimizers(self.loss_fn, config, model)
        self.notes = _small_classes(labels, config) if config.sampler == "class" else []

    def loss(self, model, batch: list[int]) -> torch.Tensor:
        labels = self.class_ids[batch].to(model.device)
        embeddings = model.embed([self.contents[i] for i in batch])
        if self.miner is not None:
            return self.loss_fn(embeddings, labels, self.miner(embeddings, labels))
        return self.loss_fn(embeddings, labels)


def _small_classes(labels: list[str], config: FitConfig) -> list[str]:
    """A class with fewer items than ``num_items_per_class`` gives all it has to each of its batches."""
    counts = Counter(labels)
    small = sorted(label for label, count in counts.items() if count < config.num_items_per_class)
    if not small:
        return []
    sizes = ", ".join(f"{label!r} ({counts[label]})" for label in small[:5]) + (" ..." if len(small) > 5 else "")
    return [
        f"{len(small)} class(es) have fewer than num_items_per_class={config.num_items_per_class} items: {sizes}; "
        "their batches hold all the items they have"
    ]


def _loss_optimizers(loss_fn: torch.nn.Module, config: FitConfig, model) -> list[torch.optim.Optimizer]:
    """A loss with learned parameters (class centres) gets its own optimizer, stepped with the model's."""
    parameters = list(loss_fn.parameters())
    if not parameters:
        return []
    if model is not None:
        loss_fn.to(model.device)
    return [torch.optim.Adam(parameters, lr=config.loss_learning_rate)]


class PairTask(Task):
    """Shuffled batches of text-image pairs (``sampler="no-duplicates"``: no caption twice in a batch, so that
    pairs sharing a caption are not each other's negatives); CLIPLoss with the model's learnable scale."""

    def __init__(self, records: list[PairItem], config: FitConfig):
        self.texts = [record.text for record in records]
        self.images = [record.image for record in records]
        if config.sampler == "no-duplicates":
            self.sampler = NoDuplicatesBatchSampler(self.texts, config.batch_size, seed=config.seed)
        else:
            self.sampler = RandomBatchSampler(self.texts, config.batch_size, seed=config.seed)
        self.loss_fn = losses.build(losses.LOSSES, config.loss_name, config.loss_options)
        self.optimizers: list[torch.optim.Optimizer] = []
        self.notes: list[str] = []

    def loss(self, model, batch: list[int]) -> torch.Tensor:
        images = model.embed_image([self.images[i] for i in batch])
        texts = model.embed_text([self.texts[i] for i in batch])
        return self.loss_fn(images, texts, model.logit_scale.exp())


def make_task(records: list, config: FitConfig, model=None) -> Task:
    if records and isinstance(records[0], PairItem):
        if not losses.LOSSES[config.loss_name].pairs:
            raise ValueError(f"text-image pairs train with CLIPLoss, not {config.loss_name}")
        return PairTask(records, config)
    if losses.LOSSES[config.loss_name].pairs:
        raise ValueError(f"{config.loss_name} trains on text-image pairs; this data is labeled items")
    return LabeledTask(records, config, model)
