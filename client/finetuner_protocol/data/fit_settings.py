"""What a fit's settings must agree with in its data, once the data's shape is known.

- The loss: a fit without one trains with its training data's default (``training.losses.DEFAULT_LOSSES``:
  TripletMarginLoss, CLIPLoss, MultipleNegativesRankingLoss, CoSENTLoss), written into ``config.loss`` so that
  the stored run names the loss it trains with; a named loss must train on data of that shape.
- The monitor: a correlation (``spearman`` / ``pearson``) only for scored evaluation data, a retrieval metric
  (``mrr@10``, ``r_precision`` ...) only for the others.
- Evaluation data: large enough to be scored at every k of ``eval_ks``.
- Vectors: as long as the model's ``input_dim`` (which the MLP needs).
"""

from __future__ import annotations

from finetuner_core.evaluation.errors import EvaluationError
from finetuner_core.evaluation.pairs import check_eval_data
from finetuner_core.evaluation.scored import CORRELATIONS
from finetuner_core.training import losses
from finetuner_protocol.backbones import canonical
from finetuner_protocol.data.errors import DataError, Problem
from finetuner_protocol.data.records import SCORED, SHAPES, LabeledItem, content_kind, shape_of
from finetuner_protocol.data.vectors import length_problems


def settle_fit(config, splits: dict[str, list]) -> None:
    """Check ``config`` (a FitConfig) against ``splits`` (validated records: ``train``, optional ``eval``) and
    settle the default loss; one :class:`DataError` says what does not fit."""
    shape = shape_of(splits["train"])
    try:
        name = losses.check_fits(config.loss_for(shape), shape)
        losses.build(losses.LOSSES, name, config.loss_options)
    except ValueError as exc:
        raise DataError("train", [Problem("train", str(exc))]) from None
    if name != config.loss_name:
        config.loss = name
    eval_records = splits.get("eval")
    _check_monitor(config.monitor, shape_of(eval_records) if eval_records else shape)
    _check_vectors(config, splits)
    if eval_records:
        try:
            check_eval_data(eval_records, tuple(config.eval_ks))
        except EvaluationError as exc:
            raise DataError("eval", [Problem("eval", str(exc))]) from None


def _check_vectors(config, splits: dict[str, list]) -> None:
    """Every vector as long as ``input_dim``; the MLP refused without one (it is the vectors' length)."""
    vectors = {split: [record for record in records if _is_vector(record)] for split, records in splits.items()}
    train = vectors.get("train")
    if not train:
        return
    input_dim = config.model_options.input_dim
    if input_dim is None and canonical(config.model) == "mlp":
        reason = f"model 'mlp' needs model_options={{'input_dim': {train[0].content.size}}}, the length of the vectors"
        raise DataError("train", [Problem("input_dim", reason)])
    for split, records in vectors.items():
        wheres = [record.source or f"item {index}" for index, record in enumerate(records)]
        problems = length_problems(wheres, [record.content for record in records], input_dim)
        if problems:
            raise DataError(split, problems)


def _is_vector(record) -> bool:
    return isinstance(record, LabeledItem) and content_kind(record.content) == "vector"


def _check_monitor(monitor: str, shape: str) -> None:
    scored = shape == SCORED
    if monitor == "loss" or (monitor in CORRELATIONS) == scored:
        return
    measured = "spearman, pearson" if scored else "metrics at a cut-off such as mrr@10"
    reason = f"monitor {monitor!r} is not measured on {SHAPES[shape]} (their evaluation reports {measured})"
    raise DataError("eval", [Problem("monitor", reason)])
