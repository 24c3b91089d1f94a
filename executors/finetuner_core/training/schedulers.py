"""Learning-rate schedules by name: each is a factor of the peak learning rate at a step (or epoch).

Every schedule with a warm-up rises linearly to the peak over ``warmup`` units (``max(1, int(total *
warmup_ratio))``), the factor at unit ``t < warmup`` being ``(t + 1) / warmup``. After the warm-up,
``progress = (t - warmup) / max(1, total - warmup)`` runs from 0 to 1.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

Factor = Callable[[int], float]


@dataclass(frozen=True)
class SchedulerSpec:
    """A schedule: ``make(total, warmup, **options)`` gives the factor of unit ``t``."""

    make: Callable[..., Factor]
    options: tuple[str, ...]
    description: str


def _warm(warmup: int, after: Callable[[float], float], total: int) -> Factor:
    def factor(t: int) -> float:
        if t < warmup:
            return (t + 1) / warmup
        return after(min(1.0, (t - warmup) / max(1, total - warmup)))

    return factor


def linear(total: int, warmup: int) -> Factor:
    return _warm(warmup, lambda progress: max(0.0, 1.0 - progress), total)


def cosine(total: int, warmup: int) -> Factor:
    return _warm(warmup, lambda progress: 0.5 * (1.0 + math.cos(math.pi * progress)), total)


def cosine_with_restarts(total: int, warmup: int, num_cycles: int = 1) -> Factor:
    if int(num_cycles) != num_cycles or num_cycles < 1:
        raise ValueError(f"num_cycles must be a whole number >= 1, got {num_cycles!r}")

    def after(progress: float) -> float:
        if progress >= 1.0:
            return 0.0
        return 0.5 * (1.0 + math.cos(math.pi * ((num_cycles * progress) % 1.0)))

    return _warm(warmup, after, total)


def polynomial(total: int, warmup: int, power: float = 1.0, end_factor: float = 0.0) -> Factor:
    if power <= 0 or not 0 <= end_factor <= 1:
        raise ValueError(f"power must be > 0 and end_factor in [0, 1], got {power!r}, {end_factor!r}")
    return _warm(warmup, lambda progress: end_factor + (1 - end_factor) * (1.0 - progress) ** power, total)


def constant(total: int, warmup: int) -> Factor:
    return lambda t: 1.0


def constant_with_warmup(total: int, warmup: int) -> Factor:
    return _warm(warmup, lambda progress: 1.0, total)


SCHEDULERS: dict[str, SchedulerSpec] = {
    "linear": SchedulerSpec(linear, (), "warm-up, then linear decay to zero"),
    "cosine": SchedulerSpec(cosine, (), "warm-up, then half a cosine down to zero"),
    "cosine_with_restarts": SchedulerSpec(
        cosine_with_restarts, ("num_cycles",), "warm-up, then num_cycles cosine decays, each restarting at the peak"
    ),
    "polynomial": SchedulerSpec(
        polynomial, ("power", "end_factor"), "warm-up, then (1 - progress) ** power down to end_factor of the peak"
    ),
    "constant": SchedulerSpec(constant, (), "the peak learning rate throughout, no warm-up"),
    "constant_with_warmup": SchedulerSpec(constant_with_warmup, (), "warm-up, then the peak learning rate"),
}


def make_factor(name: str, total: int, warmup_ratio: float, options: dict[str, Any] | None = None) -> Factor:
    """The factor function of schedule ``name`` over ``total`` units; raises ``ValueError`` naming bad options."""
    if name not in SCHEDULERS:
        raise ValueError(f"unknown scheduler {name!r}; allowed: {', '.join(SCHEDULERS)}")
    spec, options = SCHEDULERS[name], dict(options or {})
    unknown = sorted(set(options) - set(spec.options))
    if unknown:
        allowed = ", ".join(spec.options) or "none"
        raise ValueError(f"scheduler {name} has no option(s) {', '.join(unknown)}; allowed: {allowed}")
    return spec.make(max(1, total), max(1, int(total * warmup_ratio)), **options)


def build_scheduler(
    optimizer: torch.optim.Optimizer, name: str, total: int, warmup_ratio: float, options: dict[str, Any] | None = None
) -> torch.optim.lr_scheduler.LambdaLR:
    """A ``LambdaLR`` that scales every parameter group's learning rate by the schedule's factor."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, make_factor(name, total, warmup_ratio, options))
