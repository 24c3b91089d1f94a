"""What a fit's settings must agree with in its data, once the data's shape is known.

- The loss: a fit without one trains with its training data's default (``training.losses.DEFAULT_LOSSES``:
  TripletMarginLoss, CLIPLoss, MultipleNegativesRankingLoss, CoSENTLoss), written into ``config.loss`` so that
  the stored run names the loss it trains with; a named loss must train on data of that shape.
- The monitor: a correlation (``spearman`` / ``pearson``) only for scored evaluation data, a metric at a cut-off
  (``mrr@10`` ...) only for the others.
- Evaluation data: large enough to be scored at every k of ``eval_ks``.
"""

from __future__ import annotations

from finetuner_core.data.errors import DataError, Problem
from finetuner_core.data.records import SCORED, SHAPES, shape_of
from finetuner_core.evaluation.pairs import check_eval_data
from finetuner_core.training import losses


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
    if eval_records:
        check_eval_data(eval_records, tuple(config.eval_ks))


def _check_monitor(monitor: str, shape: str) -> None:
    scored = shape == SCORED
    if monitor == "loss" or ("@" in monitor) != scored:
        return
    measured = "spearman, pearson" if scored else "metrics at a cut-off such as mrr@10"
    reason = f"monitor {monitor!r} is not measured on {SHAPES[shape]} (their evaluation reports {measured})"
    raise DataError("eval", [Problem("monitor", reason)])
