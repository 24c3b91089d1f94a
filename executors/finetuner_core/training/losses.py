"""Losses and miners, by name: pytorch-metric-learning and open_clip's ClipLoss, and the pair losses below.

Each loss trains on one data shape (``LossSpec.shape``; the shape lists it in ``Shape.losses``, see
:mod:`finetuner_protocol.shapes`), and takes:

- labeled items: L2-normalised embeddings ``# (batch, dim)`` and integer class ids ``# (batch,)``, measured with
  cosine similarity (a miner may pick the triplets);
- text-image pairs (CLIPLoss): image and text embeddings ``# (batch, dim)`` and the exponentiated logit scale;
- query-document pairs: query and document embeddings ``# (batch, dim)``, row i of each being one pair; every
  other document of the batch is a query's negative;
- scored pairs: the embeddings of both texts ``# (batch, dim)`` and the gold scores ``# (batch,)``.

Options are checked against each entry's defaults, so a typo names the options that exist.
``CachedMultipleNegativesRankingLoss`` also computes its own gradients (:meth:`~CachedMultipleNegativesRankingLoss.
cached_backward`), in chunks, so that memory does not grow with the batch.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from open_clip.loss import ClipLoss
from pytorch_metric_learning import distances, losses, miners

from finetuner_protocol.data.records import LABELED, QUERY_DOC, SCORED, TEXT_IMAGE
from finetuner_protocol.shapes import SHAPES, check_loss


@dataclass(frozen=True)
class LossSpec:
    """A registered loss: how to build it, its options with defaults, whether a miner feeds it, and the shape of
    the data it trains on."""

    name: str
    build: Callable[..., torch.nn.Module]
    defaults: dict[str, Any] = field(default_factory=dict)
    uses_miner: bool = False
    description: str = ""
    shape: str = LABELED
    classes: bool = False
    choices: dict[str, tuple[Any, ...]] = field(default_factory=dict)

    @property
    def pairs(self) -> bool:
        """Trains on pairs of some kind (text-image, query-document, scored), not on labeled items."""
        return self.shape != LABELED


def _with_centres(loss_class) -> Callable[..., torch.nn.Module]:
    """A builder for a loss that learns one centre per class in the embedding space."""

    def build_loss(num_classes: int, embedding_size: int, margin: float, scale: float) -> torch.nn.Module:
        return loss_class(num_classes, embedding_size, margin=margin, scale=scale)

    return build_loss


def _cosine() -> distances.CosineSimilarity:
    return distances.CosineSimilarity()


def _positive(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ValueError(f"{name} must be a number > 0, got {value!r}")
    return float(value)


def _score_range(value: Any) -> tuple[float, float] | None:
    if value is None:
        return None
    numbers = list(value) if isinstance(value, list | tuple) else []
    if len(numbers) != 2 or not all(isinstance(v, int | float) and math.isfinite(v) for v in numbers):
        raise ValueError(f"score_range must be [low, high] (two finite numbers), got {value!r}")
    if not numbers[0] < numbers[1]:
        raise ValueError(f"score_range must have low < high, got {value!r}")
    return float(numbers[0]), float(numbers[1])


class MultipleNegativesRankingLoss(torch.nn.Module):
    """Cross-entropy over the scaled cosine similarities of each query to every document of the batch, its own
    document being the right answer (in-batch negatives); ``symmetric`` adds the same from each document to every
    query and averages the two."""

    def __init__(self, scale: float = 20.0, symmetric: bool = False):
        super().__init__()
        if not isinstance(symmetric, bool):
            raise ValueError(f"symmetric must be true or false, got {symmetric!r}")
        self.scale = _positive("scale", scale)
        self.symmetric = symmetric

    def forward(self, queries: torch.Tensor, documents: torch.Tensor) -> torch.Tensor:
        """``# (batch, dim), (batch, dim)`` -> the mean loss."""
        queries, documents = _wide(queries), _wide(documents)
        scores = F.normalize(queries, dim=-1) @ F.normalize(documents, dim=-1).T * self.scale  # (batch, batch)
        targets = torch.arange(len(scores), device=scores.device)
        loss = F.cross_entropy(scores, targets)
        if self.symmetric:
            loss = (loss + F.cross_entropy(scores.T, targets)) / 2
        return loss


class CachedMultipleNegativesRankingLoss(MultipleNegativesRankingLoss):
    """:class:`MultipleNegativesRankingLoss` with gradient caching (GradCache, Gao et al. 2021): the same loss and
    gradients, with memory bounded by ``mini_batch_size`` items whatever the batch size.

    :meth:`cached_backward` embeds every chunk of ``mini_batch_size`` texts without a graph, computes the loss on
    those embeddings (detached, requiring grad) and back-propagates it to them, then embeds each chunk again with a
    graph (replaying the random state of its first pass, so that dropout draws the same masks) and back-propagates
    the cached embedding gradients through the model."""

    def __init__(self, scale: float = 20.0, symmetric: bool = False, mini_batch_size: int = 32):
        super().__init__(scale, symmetric)
        if isinstance(mini_batch_size, bool) or not isinstance(mini_batch_size, int) or mini_batch_size < 1:
            raise ValueError(f"mini_batch_size must be an integer >= 1, got {mini_batch_size!r}")
        self.mini_batch_size = mini_batch_size

    def cached_backward(self, model, columns: list[list[Any]], scale: float = 1.0) -> float:
        """Back-propagate ``loss(*embeddings of columns) * scale`` into ``model``'s parameters; return its value
        (a non-finite value is returned without back-propagating anything). ``model.embed`` embeds a list of
        inputs with a graph; ``columns`` are the queries and the documents."""
        size = self.mini_batch_size
        chunks = [(c, column[i : i + size]) for c, column in enumerate(columns) for i in range(0, len(column), size)]
        states, parts = [], []
        with torch.no_grad():
            for _, chunk in chunks:
                states.append(RandomState(model.device))  # just before the chunk's first pass, to replay it
                parts.append(model.embed(chunk))
        cached = [
            torch.cat([part for (c, _), part in zip(chunks, parts, strict=True) if c == k]).detach().requires_grad_()
            for k in range(len(columns))
        ]
        loss = self(*cached) * scale
        value = float(loss.detach())
        if not math.isfinite(value):
            return value
        loss.backward()
        sizes = [[len(chunk) for c, chunk in chunks if c == k] for k in range(len(columns))]
        gradients = [part for k, embeddings in enumerate(cached) for part in embeddings.grad.split(sizes[k])]
        for (_, chunk), state, gradient in zip(chunks, states, gradients, strict=True):
            with state.replayed():
                model.embed(chunk).backward(gradient)
        return value


class RandomState:
    """The CPU (and the model's CUDA device's) random state at construction, to replay a forward pass exactly."""

    def __init__(self, device: torch.device):
        self.cpu = torch.get_rng_state()
        self.device = device if device.type == "cuda" else None
        self.cuda = torch.cuda.get_rng_state(device) if self.device is not None else None

    @contextmanager
    def replayed(self) -> Iterator[None]:
        """Run the block from the saved state; the generators are put back as they were afterwards."""
        devices = [self.device] if self.device is not None else []
        with torch.random.fork_rng(devices=devices):
            torch.set_rng_state(self.cpu)
            if self.device is not None:
                torch.cuda.set_rng_state(self.cuda, self.device)
            yield


class CosineSimilarityLoss(torch.nn.Module):
    """Mean squared error between the cosine similarity of each pair and its gold score, the scores mapped
    linearly from ``score_range`` (low, high) to 0..1 (``None``: the scores are taken as they are)."""

    def __init__(self, score_range: tuple[float, float] | None = None):
        super().__init__()
        self.score_range = _score_range(score_range)

    def forward(self, first: torch.Tensor, second: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        cosines = F.cosine_similarity(_wide(first), _wide(second), dim=-1)
        return F.mse_loss(cosines, _rescaled(scores.to(cosines.dtype), self.score_range))


class CoSENTLoss(torch.nn.Module):
    """CoSENT (Su 2022): for every two pairs of the batch whose gold scores differ, the pair scored higher should
    have the higher cosine similarity: ``log(1 + sum over s_i > s_j of exp(scale * (cos_j - cos_i)))``. Only the
    order of the scores counts, so they need no rescaling."""

    def __init__(self, scale: float = 20.0):
        super().__init__()
        self.scale = _positive("scale", scale)

    def forward(self, first: torch.Tensor, second: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        cosines = F.cosine_similarity(_wide(first), _wide(second), dim=-1) * self.scale
        differences = cosines[None, :] - cosines[:, None]  # [i, j] = cos_j - cos_i
        ordered = differences[scores[:, None] > scores[None, :]]  # where s_i > s_j
        return torch.logsumexp(torch.cat([ordered.new_zeros(1), ordered]), dim=0)


class MarginMSELoss(torch.nn.Module):
    """Margin-MSE over the pairs of a batch: for every two pairs i < j, the difference of their cosine
    similarities ``cos_i - cos_j`` should equal the difference of their gold scores ``s_i - s_j`` (the scores
    mapped from ``score_range`` to 0..1); the mean squared error over the batch's b(b-1)/2 such differences."""

    def __init__(self, score_range: tuple[float, float] | None = None):
        super().__init__()
        self.score_range = _score_range(score_range)

    def forward(self, first: torch.Tensor, second: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        cosines = F.cosine_similarity(_wide(first), _wide(second), dim=-1)
        gold = _rescaled(scores.to(cosines.dtype), self.score_range)
        upper = torch.triu_indices(len(cosines), len(cosines), offset=1, device=cosines.device)
        predicted = cosines[upper[0]] - cosines[upper[1]]
        return F.mse_loss(predicted, gold[upper[0]] - gold[upper[1]])


def _wide(embeddings: torch.Tensor) -> torch.Tensor:
    """At least float32: half-precision embeddings (mixed-precision training) are widened for the loss."""
    return embeddings.to(torch.promote_types(embeddings.dtype, torch.float32))


def _rescaled(scores: torch.Tensor, score_range: tuple[float, float] | None) -> torch.Tensor:
    if score_range is None:
        return scores
    low, high = score_range
    return (scores - low) / (high - low)


LOSSES: dict[str, LossSpec] = {
    spec.name: spec
    for spec in [
        LossSpec(
            "TripletMarginLoss",
            lambda margin, triplets_per_anchor: losses.TripletMarginLoss(
                margin=margin, triplets_per_anchor=triplets_per_anchor, distance=_cosine()
            ),
            {"margin": 0.1, "triplets_per_anchor": "all"},
            uses_miner=True,
            description="(anchor, positive, negative) triplets from labels; cosine margin",
            choices={"triplets_per_anchor": ("all", "an integer >= 1")},
        ),
        LossSpec(
            "InfoNCELoss",
            lambda temperature: losses.NTXentLoss(temperature=temperature, distance=_cosine()),
            {"temperature": 0.05},
            description="in-batch negatives (multiple-negatives ranking); same-label items are positives",
        ),
        LossSpec(
            "ArcFaceLoss",
            _with_centres(losses.ArcFaceLoss),
            {"margin": 28.6, "scale": 64.0},
            description="additive angular margin over learned class centres (margin in degrees); own optimizer",
            classes=True,
        ),
        LossSpec(
            "CosFaceLoss",
            _with_centres(losses.CosFaceLoss),
            {"margin": 0.35, "scale": 64.0},
            description="additive cosine margin over learned class centres; own optimizer",
            classes=True,
        ),
        LossSpec(
            "CLIPLoss",
            lambda: ClipLoss(),
            {},
            description="text-image pairs: symmetric cross-entropy over the batch, learnable temperature",
            shape=TEXT_IMAGE,
        ),
        LossSpec(
            "SupConLoss",
            lambda temperature: losses.SupConLoss(temperature=temperature, distance=_cosine()),
            {"temperature": 0.1},
            description="supervised contrastive loss over all same-label pairs in the batch",
        ),
        LossSpec(
            "SiameseLoss",
            lambda pos_margin, neg_margin: losses.ContrastiveLoss(
                pos_margin=pos_margin, neg_margin=neg_margin, distance=_cosine()
            ),
            {"pos_margin": 1.0, "neg_margin": 0.0},
            description="contrastive pairs from labels: same-label cosine below pos_margin and other-label cosine "
            "above neg_margin are penalised",
        ),
        LossSpec(
            "MultipleNegativesRankingLoss",
            MultipleNegativesRankingLoss,
            {"scale": 20.0, "symmetric": False},
            description="query-document pairs: cross-entropy of scaled cosines, the other documents of the batch "
            "as negatives; symmetric also ranks the queries for each document",
            shape=QUERY_DOC,
        ),
        LossSpec(
            "CachedMultipleNegativesRankingLoss",
            CachedMultipleNegativesRankingLoss,
            {"scale": 20.0, "symmetric": False, "mini_batch_size": 32},
            description="MultipleNegativesRankingLoss with gradient caching: large batches in the memory of "
            "mini_batch_size items",
            shape=QUERY_DOC,
        ),
        LossSpec(
            "CoSENTLoss",
            CoSENTLoss,
            {"scale": 20.0},
            description="scored pairs: a pair scored higher must have the higher cosine (order of the scores only)",
            shape=SCORED,
        ),
        LossSpec(
            "CosineSimilarityLoss",
            CosineSimilarityLoss,
            {"score_range": None},
            description="scored pairs: squared error between cosine and score, the score mapped from score_range "
            "[low, high] (default: the training data's lowest and highest score) to 0..1",
            shape=SCORED,
        ),
        LossSpec(
            "MarginMSELoss",
            MarginMSELoss,
            {"score_range": None},
            description="scored pairs: squared error between differences of cosines and differences of scores "
            "(mapped to 0..1 as for CosineSimilarityLoss) over every two pairs of a batch",
            shape=SCORED,
        ),
    ]
}

DEFAULT_LOSSES = {name: shape.default_loss for name, shape in SHAPES.items()}
"""The loss a fit trains with when it names none, by the shape of its training data (``Shape.default_loss``)."""

MINERS: dict[str, LossSpec] = {
    spec.name: spec
    for spec in [
        LossSpec(
            "TripletMarginMiner",
            lambda margin, type_of_triplets: miners.TripletMarginMiner(
                margin=margin, type_of_triplets=type_of_triplets, distance=_cosine()
            ),
            {"margin": 0.1, "type_of_triplets": "all"},
            description="triplets violating the margin: type_of_triplets = all | hard | semihard | easy",
            choices={"type_of_triplets": ("all", "hard", "semihard", "easy")},
        ),
        LossSpec(
            "BatchHardMiner",
            lambda: miners.BatchHardMiner(distance=_cosine()),
            {},
            description="for each anchor, its hardest positive and hardest negative in the batch",
        ),
    ]
}


def build(
    registry: dict[str, LossSpec],
    name: str,
    options: dict[str, Any] | None,
    num_classes: int = 2,
    embedding_size: int = 2,
) -> torch.nn.Module:
    """Build entry ``name`` of ``registry`` with ``options`` over its defaults.

    Losses with learned class centres (``classes=True``) also take the number of classes and the embedding size.
    """
    spec = _spec(registry, name, options)
    arguments = {**spec.defaults, **(options or {})}
    if spec.classes:
        arguments.update(num_classes=num_classes, embedding_size=embedding_size)
    return spec.build(**arguments)


def check_options(registry: dict[str, LossSpec], name: str, options: dict[str, Any] | None) -> None:
    """Refuse options that entry ``name`` does not take: an unknown name, a value of the wrong type (a number
    where the default is a number, a boolean where it is one, one of the ``choices``), or values with which
    the entry fails or gives a non-finite value on a small trial batch. Raises ``ValueError`` naming them."""
    spec = _spec(registry, name, options)
    for option, value in (options or {}).items():
        expected = _expected(spec, option, value)
        if expected:
            raise ValueError(f"{name} option {option} must be {expected}, got {value!r}")
    try:
        module = build(registry, name, options, num_classes=TRIAL_CLASSES, embedding_size=TRIAL_DIM)
        with torch.no_grad():
            result = _trial(module, spec.shape, miner=registry is MINERS)
    except (TypeError, ValueError, RuntimeError, AssertionError, ZeroDivisionError) as exc:
        raise ValueError(f"{name} does not work with options {options}: {exc}") from None
    if result is not None and not bool(torch.isfinite(result).all()):
        raise ValueError(f"{name} gives a non-finite loss with options {options}")


TRIAL_CLASSES, TRIAL_DIM = 4, 8


def _spec(registry: dict[str, LossSpec], name: str, options: dict[str, Any] | None) -> LossSpec:
    """The entry ``name``; a ValueError for an unknown name or unknown options, naming what exists."""
    if name not in registry:
        raise ValueError(f"unknown name {name!r}; allowed: {', '.join(registry)}")
    spec = registry[name]
    unknown = set(options or {}) - set(spec.defaults)
    if unknown:
        allowed = ", ".join(spec.defaults) or "none"
        raise ValueError(f"{name} has no option(s) {', '.join(sorted(unknown))}; allowed: {allowed}")
    return spec


def _expected(spec: LossSpec, option: str, value: Any) -> str:
    """What ``option`` takes when ``value`` is not that (a description), else the empty string."""
    default = spec.defaults[option]
    integer = isinstance(value, int) and not isinstance(value, bool)
    if option in spec.choices:
        allowed = spec.choices[option]
        fits = value in allowed or ("an integer >= 1" in allowed and integer and value >= 1)
        return "" if fits else " or ".join(repr(c) if c != "an integer >= 1" else c for c in allowed)
    if isinstance(default, bool):
        return "" if isinstance(value, bool) else "true or false"
    if isinstance(default, int | float):
        finite = (integer or isinstance(value, float)) and math.isfinite(value)
        return "" if finite else "a finite number"
    return ""


def _trial(module: torch.nn.Module, shape: str, miner: bool) -> torch.Tensor | None:
    """``module`` on a small batch of data of ``shape``: the loss (None for a miner, which only selects)."""
    generator = torch.Generator().manual_seed(0)
    embeddings = F.normalize(torch.randn(2 * TRIAL_CLASSES, TRIAL_DIM, generator=generator), dim=-1)
    labels = torch.arange(TRIAL_CLASSES).repeat_interleave(2)
    if miner:
        module(embeddings, labels)
        return None
    return TRIAL_INPUTS[shape](module, embeddings, labels)


def _pairs(embeddings: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return embeddings[:TRIAL_CLASSES], embeddings[TRIAL_CLASSES:]


TRIAL_INPUTS: dict[str, Callable[[torch.nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]] = {
    LABELED: lambda module, embeddings, labels: module(embeddings, labels),
    TEXT_IMAGE: lambda module, embeddings, labels: module(*_pairs(embeddings), torch.tensor(20.0)),
    QUERY_DOC: lambda module, embeddings, labels: module(*_pairs(embeddings)),
    SCORED: lambda module, embeddings, labels: module(
        *_pairs(embeddings), torch.arange(TRIAL_CLASSES, dtype=torch.float32)
    ),
}
"""How a loss of each shape is called on the trial batch (what its task passes it)."""


def check_fits(name: str, shape: str) -> str:
    """``name`` when that loss trains on data of ``shape``; else a ValueError listing the losses that do
    (the shapes' ``losses``: :func:`finetuner_protocol.shapes.check_loss`)."""
    return check_loss(name, shape)
