"""What one training step computes, by the shape of the data: labeled items, text-image pairs, query-document
pairs or scored pairs (one task each, in :data:`TASKS` by the shape's name; :func:`make_task` reads it).

A task owns its sampler and its loss; the loop only asks it for batches and for the loss of a batch (or, through
``backward``, for its gradients).
"""

from __future__ import annotations

import math
from collections import Counter

import torch

from finetuner_core.training import losses
from finetuner_core.training.samplers import SAMPLERS, NoDuplicatesBatchSampler, RandomBatchSampler
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
from finetuner_protocol.settings import FitSettings
from finetuner_protocol.shapes import shape_of


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

    def __init__(self, records: list[LabeledItem], config: FitSettings, model=None):
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


def _small_classes(labels: list[str], config: FitSettings) -> list[str]:
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


def _loss_optimizers(loss_fn: torch.nn.Module, config: FitSettings, model) -> list[torch.optim.Optimizer]:
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

    def __init__(self, records: list[PairItem], config: FitSettings, model=None):
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


class QueryDocTask(Task):
    """Batches of query-document pairs with no query twice (sampler ``random``: plain shuffled batches); every
    other document of a batch is a query's negative. CachedMultipleNegativesRankingLoss back-propagates in chunks
    of its ``mini_batch_size`` (:meth:`backward`)."""

    def __init__(self, records: list[QueryDocItem], config: FitSettings, model=None):
        self.queries = [record.query for record in records]
        self.documents = [record.document for record in records]
        if config.sampler == "random":
            self.sampler = RandomBatchSampler(self.queries, config.batch_size, seed=config.seed)
        else:
            self.sampler = NoDuplicatesBatchSampler(self.queries, config.batch_size, seed=config.seed)
        self.loss_fn = losses.build(losses.LOSSES, config.loss_for(QUERY_DOC), config.loss_options)
        self.optimizers: list[torch.optim.Optimizer] = []
        self.notes = _sampler_note(config, "no-duplicates", "query-document pairs")

    def columns(self, batch: list[int]) -> list[list[str]]:
        return [[self.queries[i] for i in batch], [self.documents[i] for i in batch]]

    def loss(self, model, batch: list[int]) -> torch.Tensor:
        queries, documents = self.columns(batch)
        return self.loss_fn(model.embed(queries), model.embed(documents))

    def backward(self, model, batch: list[int], scale: float) -> float:
        if isinstance(self.loss_fn, losses.CachedMultipleNegativesRankingLoss):
            return self.loss_fn.cached_backward(model, self.columns(batch), scale)
        return super().backward(model, batch, scale)


class ScoredPairTask(Task):
    """Shuffled batches of scored pairs; the loss compares the cosine of each pair's embeddings with its score.
    A loss with ``score_range`` left at None maps the training data's lowest and highest score to 0..1."""

    def __init__(self, records: list[ScoredPairItem], config: FitSettings, model=None):
        self.texts = [record.text for record in records]
        self.text_pairs = [record.text_pair for record in records]
        self.scores = torch.tensor([record.score for record in records], dtype=torch.float32)
        self.sampler = RandomBatchSampler(self.texts, config.batch_size, seed=config.seed)
        name = config.loss_for(SCORED)
        options = dict(config.loss_options)
        if "score_range" in losses.LOSSES[name].defaults and options.get("score_range") is None:
            options["score_range"] = [float(self.scores.min()), float(self.scores.max())]
        self.loss_fn = losses.build(losses.LOSSES, name, options)
        self.optimizers: list[torch.optim.Optimizer] = []
        self.notes = _sampler_note(config, "random", "scored pairs")

    def loss(self, model, batch: list[int]) -> torch.Tensor:
        first = model.embed([self.texts[i] for i in batch])
        second = model.embed([self.text_pairs[i] for i in batch])
        return self.loss_fn(first, second, self.scores[batch].to(first.device))


def _sampler_note(config: FitSettings, used: str, what: str) -> list[str]:
    if config.sampler in (used, "random"):
        return []
    return [f"sampler {config.sampler!r} does not apply to {what}: batches come from the {used!r} sampler"]


def make_task(records: list, config: FitSettings, model=None) -> Task:
    """The task for the records' shape; a loss that does not train on that shape is refused, naming the losses
    that do."""
    shape = shape_of(records).name
    losses.check_fits(config.loss_for(shape), shape)
    return TASKS[shape](records, config, model)


TASKS: dict[str, type[Task]] = {
    LABELED: LabeledTask,
    TEXT_IMAGE: PairTask,
    QUERY_DOC: QueryDocTask,
    SCORED: ScoredPairTask,
}
"""The training task of each data shape (``finetuner_protocol.shapes.SHAPES``), built with (records, config,
model)."""
