"""The fit configuration: typed, with defaults and help, validated where it enters (client, executors)."""

from __future__ import annotations

from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from finetuner_core.data.csv_reader import CSVOptions
from finetuner_core.evaluation.evaluate import DEFAULT_KS
from finetuner_core.evaluation.scored import CORRELATIONS
from finetuner_core.models.options import ModelOptions
from finetuner_core.models.registry import DEFAULT_TEXT_MODEL, expected_modality
from finetuner_core.training import losses
from finetuner_core.training.distributed_options import DistributedOptions, DistributedSetting
from finetuner_core.training.loggers import LOGGERS
from finetuner_core.training.samplers import SAMPLERS
from finetuner_core.training.schedulers import SCHEDULERS, make_factor


def optimizer_names() -> list[str]:
    """Every optimizer class in ``torch.optim``."""
    return sorted(
        name
        for name, value in vars(torch.optim).items()
        if isinstance(value, type) and issubclass(value, torch.optim.Optimizer) and value is not torch.optim.Optimizer
    )


class ConfigError(ValueError):
    """A fit configuration was refused; the message names each field and the reason."""


class FitConfig(BaseModel):
    """Everything a run needs besides its data. The defaults are the recipe described in the README."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    model: str = Field(DEFAULT_TEXT_MODEL, description="registered backbone name or local model folder")
    model_options: ModelOptions = Field(default_factory=ModelOptions, description="how the backbone is built")
    loss: str | None = Field(
        None,
        description="loss name (training.losses.LOSSES); None: the data's default (training.losses.DEFAULT_LOSSES): "
        "TripletMarginLoss, CLIPLoss (text-image), MultipleNegativesRankingLoss (query-document), CoSENTLoss (scored)",
    )
    loss_options: dict[str, Any] = Field(default_factory=dict, description="options of the loss (margin ...)")
    miner: str | None = Field("TripletMarginMiner", description="miner for losses that use one, or None")
    miner_options: dict[str, Any] = Field(default_factory=dict, description="options of the miner")
    sampler: str = Field("class", description="how batches are drawn: class | random | no-duplicates")
    optimizer: str = Field("AdamW", description="any torch.optim optimizer by name")
    optimizer_options: dict[str, Any] = Field(default_factory=dict, description="extra optimizer arguments")
    learning_rate: float = Field(2e-5, gt=0, description="peak learning rate")
    loss_learning_rate: float = Field(
        1e-3, gt=0, description="learning rate of a loss's own parameters (ArcFace / CosFace class centres)"
    )
    warmup_ratio: float = Field(0.1, ge=0, lt=1, description="share of steps with linear warm-up")
    scheduler: str = Field("linear", description="learning-rate schedule (training.schedulers.SCHEDULERS)")
    scheduler_options: dict[str, Any] = Field(
        default_factory=dict, description="options of the schedule (num_cycles, power, end_factor)"
    )
    scheduler_interval: Literal["step", "epoch"] = Field(
        "step", description="advance the schedule after every optimizer step, or after every epoch"
    )
    layer_lr_decay: float | None = Field(
        None, gt=0, le=1, description="layer-wise decay: a layer d deep from the output trains at lr * decay ** d"
    )
    head_learning_rate: float | None = Field(
        None, gt=0, description="learning rate of the projection head (None: as the layer it would be)"
    )
    gradient_accumulation_steps: int = Field(1, ge=1, description="batches whose gradients add up to one step")
    max_grad_norm: float | None = Field(None, gt=0, description="clip the total gradient norm to this (None: off)")
    eval_every_steps: int | None = Field(
        None, ge=1, description="evaluate on the eval data every N steps (None: only before and after)"
    )
    monitor: str = Field(
        "loss", description="what early stopping and the best-model checkpoint watch: loss, or a metric such as mrr@10"
    )
    early_stopping_patience: int | None = Field(
        None, ge=1, description="stop after this many checks of the monitor without improvement (None: off)"
    )
    keep_best_model: bool = Field(
        True,
        description="with a metric monitor and evaluation data: hand back the best model measured (every "
        "eval_every_steps steps when set, and when training ends), never one worse than the pretrained model",
    )
    epochs: int = Field(1, ge=1, description="passes over the training data")
    max_steps: int | None = Field(None, ge=1, description="stop after this many steps (None: epochs decide)")
    batch_size: int | None = Field(
        64, ge=2, description="items per batch; None: the fastest (CPU) or largest that fits (CUDA), searched"
    )
    num_items_per_class: int = Field(4, ge=2, description="items of each class in a batch (class sampler)")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto: CUDA when present")
    seed: int = Field(42, description="seed of the sampler, torch, numpy and python's random")
    deterministic: bool = Field(False, description="deterministic algorithms only (torch, cuDNN, cuBLAS)")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto",
        description="forward pass in bf16 / fp16 (CUDA only) or fp32; auto: bf16 on CUDA and on CPUs with "
        "bf16 instructions, else fp32",
    )
    checkpoint_every_steps: int | None = Field(
        None, ge=1, description="write the training checkpoint every N steps (besides each epoch's end), to resume"
    )
    eval_ks: list[int] = Field(list(DEFAULT_KS), min_length=1, description="cut-offs k of the metrics")
    log_every: int = Field(10, ge=1, description="log the loss every N steps")
    csv_options: CSVOptions = Field(default_factory=CSVOptions, description="how CSV files are read")
    run_name: str | None = Field(None, max_length=200, description="a name for the run")
    to_onnx: bool = Field(False, description="also export the tuned model to ONNX (artifact folder onnx/)")
    loggers: list[str] = Field(
        default_factory=list,
        description="experiment loggers (training.loggers.LOGGERS: tensorboard, mlflow, wandb), offline, writing "
        "to the run's logs/<logger>/ folder",
    )
    wise_ft_alpha: float | None = Field(
        None, gt=0, le=1, description="WiSE-FT: the saved weights are (1 - alpha) * initial + alpha * fine-tuned"
    )
    distributed: DistributedSetting = Field(
        default_factory=DistributedOptions, description="several processes or machines (torchrun): docs/DISTRIBUTED.md"
    )

    @field_validator("loss")
    @classmethod
    def _known_loss(cls, value: str | None) -> str | None:
        return None if value is None else _known(value, losses.LOSSES, "loss")

    @field_validator("miner")
    @classmethod
    def _known_miner(cls, value: str | None) -> str | None:
        return None if value is None else _known(value, losses.MINERS, "miner")

    @field_validator("sampler")
    @classmethod
    def _known_sampler(cls, value: str) -> str:
        return _known(value, SAMPLERS, "sampler")

    @field_validator("optimizer")
    @classmethod
    def _known_optimizer(cls, value: str) -> str:
        return _known(value, optimizer_names(), "optimizer")

    @field_validator("scheduler")
    @classmethod
    def _known_scheduler(cls, value: str) -> str:
        return _known(value, SCHEDULERS, "scheduler")

    @field_validator("loggers")
    @classmethod
    def _known_loggers(cls, value: list[str]) -> list[str]:
        return list(dict.fromkeys(_known(name, LOGGERS, "logger") for name in value))

    @field_validator("monitor")
    @classmethod
    def _monitor_form(cls, value: str) -> str:
        name, _, k = value.partition("@")
        if value not in ("loss", *CORRELATIONS) and not (name and k.isdigit()):
            raise ValueError(
                f"monitor must be 'loss', a metric at a cut-off such as 'mrr@10', or (scored pairs) "
                f"{' / '.join(CORRELATIONS)}, got {value!r}"
            )
        return value

    @field_validator("eval_ks")
    @classmethod
    def _positive_ks(cls, value: list[int]) -> list[int]:
        if any(k < 1 for k in value):
            raise ValueError(f"every k must be >= 1, got {value}")
        return sorted(set(value))

    @model_validator(mode="after")
    def _consistent(self) -> FitConfig:
        if self.sampler == "class" and self.batch_size is not None and self.batch_size % self.num_items_per_class:
            raise ValueError(
                f"batch_size ({self.batch_size}) must be a multiple of num_items_per_class "
                f"({self.num_items_per_class}) with the class sampler"
            )
        if self.precision == "fp16" and self.device == "cpu":
            raise ValueError("precision 'fp16' needs CUDA (it trains with loss scaling on the GPU); use bf16 or fp32")
        losses.build(losses.LOSSES, self.loss_name, self.loss_options)
        try:
            make_factor(self.scheduler, 10, self.warmup_ratio, self.scheduler_options)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"scheduler_options: {exc}") from None
        if "@" in self.monitor and int(self.monitor.partition("@")[2]) not in self.eval_ks:
            raise ValueError(f"monitor {self.monitor!r} needs its cut-off in eval_ks ({self.eval_ks})")
        if self.miner is not None:
            losses.build(losses.MINERS, self.miner, self.miner_options)
        locking = self.model_options.locking()
        if locking and expected_modality(self.model) != "text-image":
            raise ValueError(f"model_options {', '.join(locking)}: only for CLIP models, not {self.model!r}")
        return self

    @property
    def modality(self) -> str:
        """What the model takes: text, image, vector or text-image (pairs)."""
        return expected_modality(self.model, self.model_options.select_model)

    @property
    def loss_name(self) -> str:
        """The loss named, else the default for what the model takes: text-image pairs or labeled items (a fit's
        data settles it for query-document and scored pairs: data.fit_settings)."""
        return self.loss_for("text-image" if self.modality == "text-image" else "labeled")

    def loss_for(self, shape: str) -> str:
        """The loss named, else the default loss for data of ``shape`` (training.losses.DEFAULT_LOSSES)."""
        return self.loss if self.loss is not None else losses.DEFAULT_LOSSES[shape]

    @property
    def monitor_mode(self) -> Literal["min", "max"]:
        """The loss should fall, every retrieval metric should rise."""
        return "min" if self.monitor == "loss" else "max"

    @property
    def uses_miner(self) -> bool:
        return self.miner is not None and losses.LOSSES[self.loss_name].uses_miner


def _known(value: str, allowed, what: str) -> str:
    if value not in allowed:
        raise ValueError(f"unknown {what} {value!r}; allowed: {', '.join(allowed)}")
    return value


def parse_fit_config(parameters: dict[str, Any]) -> FitConfig:
    """Validate ``parameters`` into a :class:`FitConfig`, or raise :class:`ConfigError` naming each field."""
    try:
        return FitConfig.model_validate(parameters)
    except ValidationError as exc:
        lines = [f"  {'.'.join(map(str, e['loc'])) or 'config'}: {_reason(e)}" for e in exc.errors()]
        raise ConfigError("invalid fit configuration:\n" + "\n".join(lines)) from None


def _reason(error: dict[str, Any]) -> str:
    """Pydantic's message, without the ``Value error, `` it puts before the reasons the validators give."""
    message = error["msg"]
    return message.removeprefix("Value error, ") if error.get("type") == "value_error" else message
