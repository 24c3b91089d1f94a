"""The fit configuration as the service checks it: :class:`~finetuner_protocol.settings.FitSettings` (every
setting, typed and bounded, with its default and help; what the client checks too) and what needs the core's code:
that the loss, miner, schedule and optimizer work with their options, and that the trainer can run the device and
precision asked for (:func:`check_runtime`)."""

from __future__ import annotations

import inspect
import math
from typing import Any

import torch
from pydantic import Field, model_validator

from finetuner_core.training import losses
from finetuner_core.training.distributed_options import DistributedOptions, DistributedSetting
from finetuner_core.training.precision import PrecisionError, cpu_has_fast_bf16, cuda_supports_bf16, resolve_precision
from finetuner_core.training.schedulers import make_factor
from finetuner_protocol.data.csv_reader import CSVOptions
from finetuner_protocol.model_options import FieldError
from finetuner_protocol.settings import ConfigError, FitSettings, validate_settings

__all__ = [
    "SERVICE_FIELDS",
    "CSVOptions",
    "ConfigError",
    "FitConfig",
    "check_optimizer",
    "check_runtime",
    "parse_fit_config",
]


def optimizer_names() -> list[str]:
    """Every optimizer class in ``torch.optim``."""
    return sorted(
        name
        for name, value in vars(torch.optim).items()
        if isinstance(value, type) and issubclass(value, torch.optim.Optimizer) and value is not torch.optim.Optimizer
    )


SERVICE_FIELDS = ("model_source",)  # FitConfig's fields the trainer sets, never a request


class FitConfig(FitSettings):
    """:class:`FitSettings` with the checks that build what they name: each option is tried where it is given."""

    distributed: DistributedSetting = Field(
        default_factory=DistributedOptions, description=FitSettings.model_fields["distributed"].description
    )
    model_source: dict[str, Any] | None = Field(
        None,
        description="set by the trainer, never by a request: where the model's weights come from (name, id, kind, "
        "family, revision: models.resolve's record; kind 'run': an earlier run's artifact, with its digest and base)",
    )

    @model_validator(mode="after")
    def _works(self) -> FitConfig:
        if (loss := self.known_loss) is not None:  # else checked when the model is resolved
            _checked("loss_options", losses.check_options, losses.LOSSES, loss, self.loss_options)
        if self.miner is not None:
            _checked("miner_options", losses.check_options, losses.MINERS, self.miner, self.miner_options)
        _checked("scheduler_options", _check_schedule, self.scheduler, self.warmup_ratio, self.scheduler_options)
        check_optimizer(self.optimizer, self.optimizer_options, self.learning_rate)
        return self


def parse_fit_config(parameters: dict[str, Any]) -> FitConfig:
    """Validate ``parameters`` into a :class:`FitConfig`, or raise :class:`ConfigError` naming each field."""
    return validate_settings(FitConfig, parameters)


def check_optimizer(name: str, options: dict[str, Any], learning_rate: float) -> None:
    """Refuse ``options`` that optimizer ``name`` does not take: unknown arguments (from its signature), and
    values with which it cannot be built or take a step (one step on a dummy parameter)."""
    cls = getattr(torch.optim, name)
    taken = [p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "params", "lr")]
    if "lr" in options:
        raise FieldError("optimizer_options", "lr is set by learning_rate (and per layer by layer_lr_decay)")
    unknown = sorted(set(options) - set(taken))
    if unknown:
        raise FieldError(
            "optimizer_options", f"{name} has no option(s) {', '.join(unknown)}; allowed: {', '.join(taken)}"
        )
    parameter = torch.nn.Parameter(torch.zeros(2))
    try:
        optimizer = cls([parameter], lr=learning_rate, **options)
        if not (options.get("fused") or options.get("capturable")):  # CUDA options: the trainer's GPU decides
            parameter.grad = torch.ones(2)
            optimizer.step()
    except (TypeError, ValueError, RuntimeError, AssertionError) as exc:
        if options:
            raise FieldError("optimizer_options", f"{name} does not work with options {options}: {exc}") from None
        raise FieldError("optimizer", f"{name} cannot train here: {exc}") from None


def check_runtime(config: FitSettings) -> None:
    """Refuse, with :class:`ConfigError`, settings this machine cannot train with: ``device='cuda'`` without a
    GPU, a ``precision`` the device does not run. Called by the trainer (the client cannot know its hardware)."""
    problems = []
    if config.device == "cuda" and not torch.cuda.is_available():
        problems.append("device: 'cuda', but the trainer has no CUDA device; use 'auto' or 'cpu'")
    device = "cuda" if config.device == "cuda" or (config.device == "auto" and torch.cuda.is_available()) else "cpu"
    if not problems:
        try:
            resolve_precision(config.precision, device, device == "cuda" and cuda_supports_bf16(), cpu_has_fast_bf16())
        except PrecisionError as exc:
            problems.append(f"precision: {exc} (on this trainer)")
    if problems:
        raise ConfigError("invalid fit configuration:\n" + "\n".join(f"  {p}" for p in problems))


def _check_schedule(name: str, warmup_ratio: float, options: dict[str, Any]) -> None:
    factor = make_factor(name, 10, warmup_ratio, options)
    values = [factor(step) for step in range(11)]
    if not all(math.isfinite(value) and value >= 0 for value in values):
        raise ValueError(f"scheduler {name} with {options} gives learning-rate factors {values}, not finite and >= 0")


def _checked(field: str, check, *arguments) -> None:
    """``check(*arguments)``, its TypeError / ValueError as a reason about ``field``."""
    try:
        check(*arguments)
    except (TypeError, ValueError) as exc:
        raise FieldError(field, str(exc)) from None
