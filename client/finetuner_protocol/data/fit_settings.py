"""What a fit's settings must agree with in its data, once the data's shape is known (its
:class:`~finetuner_protocol.shapes.Shape`).

- The loss: a fit without one trains with its training data's default (``Shape.default_loss``: TripletMarginLoss,
  CLIPLoss, MultipleNegativesRankingLoss, CoSENTLoss), written into ``config.loss`` so that the stored run names
  the loss it trains with; a named loss must be one of the shape's ``losses``, and the loss options must be its.
- The monitor: a correlation (``spearman`` / ``pearson``) only for evaluation data measured by correlation (scored
  pairs), a retrieval metric (``mrr@10``, ``r_precision`` ...) only for the others.
- Evaluation data: large enough to be scored at every k of ``eval_ks`` (:mod:`.eval_depth`).
- Vectors: as long as the model's ``input_dim`` (which the MLP needs).

What needs the service's code (whether the settled loss can be built with its options) the core checks.
"""

from __future__ import annotations

from finetuner_protocol import choices
from finetuner_protocol.backbones import DEFAULT_VECTOR_MODEL, canonical
from finetuner_protocol.data.errors import DataError, Problem
from finetuner_protocol.data.eval_depth import check_eval_depth
from finetuner_protocol.data.records import LabeledItem, content_kind
from finetuner_protocol.data.vectors import length_problems
from finetuner_protocol.shapes import Shape, check_loss, shape_of


def settle_fit(config, splits: dict[str, list]) -> None:
    """Check ``config`` (fit settings) against ``splits`` (validated records: ``train``, optional ``eval``) and
    settle the default loss; one :class:`DataError` says what does not fit."""
    shape = shape_of(splits["train"])
    try:
        name = check_loss(config.loss or shape.default_loss, shape.name)
        _check_loss_options(name, config.loss_options)
    except ValueError as exc:
        raise DataError("train", [Problem("train", str(exc))]) from None
    if name != config.loss_name:
        config.loss = name
    eval_records = splits.get("eval")
    _check_monitor(config.monitor, shape_of(eval_records) if eval_records else shape)
    _check_vectors(config, splits)
    if eval_records:
        try:
            check_eval_depth(eval_records, config.eval_ks)
        except ValueError as exc:
            raise DataError("eval", [Problem("eval", str(exc))]) from None


def _check_loss_options(name: str, options: dict) -> None:
    """Options set for a fit's default loss (chosen by the model) must be those of the loss its data settles."""
    allowed = choices.LOSS_OPTIONS[name]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(f"{name} has no option(s) {', '.join(unknown)}; allowed: {', '.join(allowed) or 'none'}")


def _check_vectors(config, splits: dict[str, list]) -> None:
    """Every vector as long as ``input_dim``; the MLP refused without one (it is the vectors' length)."""
    vectors = {split: [record for record in records if _is_vector(record)] for split, records in splits.items()}
    train = vectors.get("train")
    if not train:
        return
    input_dim = config.model_options.input_dim
    if input_dim is None and canonical(config.model) == DEFAULT_VECTOR_MODEL:
        reason = f"model 'mlp' needs model_options={{'input_dim': {train[0].content.size}}}, the length of the vectors"
        raise DataError("train", [Problem("input_dim", reason)])
    for split, records in vectors.items():
        wheres = [record.source or f"item {index}" for index, record in enumerate(records)]
        problems = length_problems(wheres, [record.content for record in records], input_dim)
        if problems:
            raise DataError(split, problems)


def _is_vector(record) -> bool:
    return isinstance(record, LabeledItem) and content_kind(record.content) == "vector"


def _check_monitor(monitor: str, shape: Shape) -> None:
    if shape.measures(monitor):
        return
    reason = f"monitor {monitor!r} is not measured on {shape.description} (their evaluation reports {shape.reports})"
    raise DataError("eval", [Problem("monitor", reason)])
