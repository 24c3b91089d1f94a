"""The names of what an evaluation reports, as the service keys them, and what a fit's ``monitor`` may watch.

- ``METRICS`` at a cut-off ``k`` are keyed ``name@k`` (``mrr@10``), one per ``k`` of ``eval_ks``;
- ``RANK_METRICS`` have no cut-off (``r_precision``);
- ``CORRELATIONS`` are what scored pairs are measured by (``spearman``, ``pearson``).

The core computes them (``finetuner_core.evaluation.metrics.METRICS`` / ``RANK_METRICS``, a test keeps these names
equal to them; ``finetuner_core.evaluation.scored``) and takes ``CORRELATIONS`` and ``DEFAULT_KS`` from here.
"""

from __future__ import annotations

import difflib

METRICS = ("precision", "recall", "f1", "hit", "mrr", "map", "ndcg", "dcg")
RANK_METRICS = ("r_precision",)
CORRELATIONS = ("spearman", "pearson")
MONITORS = ("loss", *RANK_METRICS, *CORRELATIONS)  # besides a metric at a cut-off
DEFAULT_KS = (1, 10, 20)
MAX_K = 10_000


def cut_off(name: str) -> int | None:
    """``k`` of a metric key ``name@k``; None for a key without a cut-off."""
    _, at, k = name.partition("@")
    return int(k) if at and k.isdigit() else None


def is_monitor(name: str) -> bool:
    """Whether ``name`` is something a monitor can watch: the loss, or a key the evaluation reports."""
    metric, at, k = name.partition("@")
    return name in MONITORS or (bool(at) and metric in METRICS and k.isdigit() and int(k) >= 1)


def monitor_problem(name: str) -> str:
    """Why ``name`` is no monitor, with the closest name the evaluation reports."""
    metric, at, k = name.partition("@")
    if at:
        at_k = f"@{k}" if k.isdigit() and int(k) >= 1 else "@10"
        guess = [close + at_k for close in difflib.get_close_matches(metric, METRICS, 1)]
    else:
        guess = [f"{metric}@10"] if metric in METRICS else difflib.get_close_matches(name, MONITORS, 1)
    hint = f"did you mean {guess[0]!r}? " if guess else ""
    return (
        f"{name!r} is no metric the evaluation reports; {hint}monitor 'loss', a metric at a cut-off k of "
        f"eval_ks ({', '.join(METRICS)}; e.g. 'mrr@10'), {', '.join(RANK_METRICS)}, or for scored pairs "
        f"{' / '.join(CORRELATIONS)}"
    )
