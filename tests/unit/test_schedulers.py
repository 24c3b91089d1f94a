import math

import pytest
import torch

from finetuner_core.config import ConfigError, parse_fit_config
from finetuner_core.training.schedulers import SCHEDULERS, build_scheduler, make_factor

TOTAL, RATIO = 20, 0.1  # warm-up of 2 steps
WARMUP = 2


def _after(t: int) -> float:
    return (t - WARMUP) / (TOTAL - WARMUP)


def reference(name: str, t: int, **options) -> float:
    """Each schedule written out by hand."""
    if name == "constant":
        return 1.0
    if t < WARMUP:
        return (t + 1) / WARMUP
    p = _after(t)
    if name == "linear":
        return 1 - p
    if name == "cosine":
        return 0.5 * (1 + math.cos(math.pi * p))
    if name == "cosine_with_restarts":
        cycles = options.get("num_cycles", 1)
        return 0.0 if p >= 1 else 0.5 * (1 + math.cos(math.pi * ((cycles * p) % 1)))
    if name == "polynomial":
        end = options.get("end_factor", 0.0)
        return end + (1 - end) * (1 - p) ** options.get("power", 1.0)
    if name == "constant_with_warmup":
        return 1.0
    raise AssertionError(name)


CASES = [(name, {}) for name in SCHEDULERS] + [
    ("cosine_with_restarts", {"num_cycles": 3}),
    ("polynomial", {"power": 2.0}),
    ("polynomial", {"power": 0.5, "end_factor": 0.1}),
]


@pytest.mark.parametrize("name,options", CASES)
def test_every_schedule_follows_its_formula(name, options):
    factor = make_factor(name, TOTAL, RATIO, options)
    for t in [0, 1, 2, 3, 7, 10, 13, 19, 20]:
        assert factor(t) == pytest.approx(reference(name, t, **options), abs=1e-12), t


@pytest.mark.parametrize("name", sorted(SCHEDULERS))
def test_every_schedule_drives_the_optimizer_learning_rate(name):
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.5)
    scheduler = build_scheduler(optimizer, name, TOTAL, RATIO)
    seen = []
    for _ in range(TOTAL):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert seen == pytest.approx([0.5 * reference(name, t) for t in range(TOTAL)])
    assert SCHEDULERS[name].description


def test_restarts_return_to_the_peak():
    factor = make_factor("cosine_with_restarts", 22, 0, {"num_cycles": 2})  # warm-up 1, then 21 steps
    assert factor(1) == pytest.approx(1.0) and factor(1 + 21 // 2 + 1) > factor(1 + 21 // 2)


def test_the_default_is_warmup_then_linear_decay():
    config = parse_fit_config({})
    assert (config.scheduler, config.scheduler_interval, config.warmup_ratio) == ("linear", "step", 0.1)


@pytest.mark.parametrize(
    "parameters,message",
    [
        ({"scheduler": "nope"}, "unknown scheduler 'nope'; allowed: linear, cosine"),
        ({"scheduler": "cosine", "scheduler_options": {"power": 2}}, "scheduler cosine has no option(s) power"),
        ({"scheduler": "polynomial", "scheduler_options": {"power": 0}}, "power must be > 0"),
        ({"scheduler": "cosine_with_restarts", "scheduler_options": {"num_cycles": 0.5}}, "num_cycles must be"),
        ({"scheduler_interval": "batch"}, "scheduler_interval: Input should be 'step' or 'epoch'"),
    ],
)
def test_bad_schedules_are_refused_naming_the_field(parameters, message):
    with pytest.raises(ConfigError) as info:
        parse_fit_config(parameters)
    assert message in str(info.value)
