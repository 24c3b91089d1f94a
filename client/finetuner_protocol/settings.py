"""A fit's settings: every setting, typed, bounded, with its default and help, as the client and the service read it.

:class:`FitSettings` checks what needs no model code: types, bounds, unknown fields, names (a misspelt one gets the
closest name), the options each named loss, miner and schedule takes, and settings that contradict each other. The
service's core adds what needs its code (``finetuner_core.config.FitConfig``: whether a loss, miner, schedule or
optimizer works with its options) and what needs the trainer's hardware. :func:`parse_settings` gives one line per
refused field.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_serializer, field_validator, model_validator

from finetuner_protocol import choices
from finetuner_protocol.backbones import DEFAULT_CLIP_MODEL, DEFAULT_TEXT_MODEL, canonical, expected_modality
from finetuner_protocol.data.csv_reader import CSVOptions
from finetuner_protocol.data.records import LABELED, TEXT_IMAGE
from finetuner_protocol.distributed import DistributedSetting, DistributedSettings
from finetuner_protocol.metrics import DEFAULT_KS, MAX_K, cut_off, is_monitor, monitor_problem
from finetuner_protocol.model_options import FieldError, ModelOptions
from finetuner_protocol.shapes import SHAPES

MAX_STEPS = 10**7  # steps, and step intervals (evaluation, checkpoints, logging)
MAX_EPOCHS = 10_000
MAX_BATCH_SIZE = 65_536
MAX_ACCUMULATION = 1024
MAX_LEARNING_RATE = 10.0
OPTIMIZER_ALIASES = {"layer_wise_lr_decay": "layer_lr_decay"}  # Finetuner's name in optimizer_options -> field


Modality = Literal["text", "image", "vector", "text-image"]


class ConfigError(ValueError):
    """A fit configuration was refused; the message names each field and the reason."""


class FitSettings(BaseModel):
    """Everything a run needs besides its data. The defaults are the recipe described in the README."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=(), allow_inf_nan=False)

    model: str = Field(
        DEFAULT_TEXT_MODEL, max_length=4096, description="registered backbone name or local model folder"
    )
    model_options: ModelOptions = Field(default_factory=ModelOptions, description="how the backbone is built")
    model_modality: Modality | None = Field(
        None,
        description="what the model takes, as the service resolved it (text, image, vector, text-image); None: "
        "known from the name alone, or not yet resolved",
    )
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
    optimizer_options: dict[str, Any] = Field(
        default_factory=dict,
        description="extra arguments of the optimizer (betas, weight_decay ...; checked against it); "
        "layer_wise_lr_decay here is read as layer_lr_decay",
    )
    learning_rate: float = Field(2e-5, gt=0, le=MAX_LEARNING_RATE, description="peak learning rate")
    loss_learning_rate: float = Field(
        1e-3,
        gt=0,
        le=MAX_LEARNING_RATE,
        description="learning rate of a loss's own parameters (ArcFace / CosFace class centres)",
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
        None,
        gt=0,
        le=MAX_LEARNING_RATE,
        description="learning rate of the projection head (None: as the layer it would be)",
    )
    gradient_accumulation_steps: int = Field(
        1, ge=1, le=MAX_ACCUMULATION, description="batches whose gradients add up to one step"
    )
    max_grad_norm: float | None = Field(
        None, gt=0, le=1e6, description="clip the total gradient norm to this (None: off)"
    )
    eval_every_steps: int | None = Field(
        None, ge=1, le=MAX_STEPS, description="evaluate on the eval data every N steps (None: only before and after)"
    )
    monitor: str = Field(
        "loss",
        description="what early stopping and the best-model checkpoint watch: loss, or a metric the evaluation "
        "reports: a metric at a cut-off in eval_ks (mrr@10, precision@1 ...), r_precision, or for scored pairs "
        "spearman / pearson",
    )
    early_stopping_patience: int | None = Field(
        None,
        ge=1,
        le=MAX_EPOCHS,
        description="stop after this many checks of the monitor without improvement (None: off)",
    )
    keep_best_model: bool = Field(
        True,
        description="with a metric monitor and evaluation data: hand back the best model measured (every "
        "eval_every_steps steps when set, and when training ends), never one worse than the pretrained model",
    )
    epochs: int = Field(1, ge=1, le=MAX_EPOCHS, description="passes over the training data (unless max_steps is set)")
    max_steps: int | None = Field(
        None,
        ge=1,
        le=MAX_STEPS,
        description="the number of optimizer steps to train, as in the Hugging Face Trainer: it overrides epochs, "
        "repeating the data (in a new order each epoch) when it holds fewer steps, stopping in the middle of "
        "an epoch when it holds more (None: epochs decide)",
    )
    batch_size: int | None = Field(
        64,
        ge=2,
        le=MAX_BATCH_SIZE,
        description="items per batch; None: the fastest (CPU) or largest that fits (CUDA), searched",
    )
    num_items_per_class: int = Field(
        4, ge=2, le=MAX_BATCH_SIZE, description="items of each class in a batch (class sampler)"
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="auto: CUDA when present; cuda is refused by a trainer without a GPU"
    )
    seed: int = Field(42, ge=0, lt=2**63, description="seed of the sampler, torch, numpy and python's random")
    deterministic: bool = Field(False, description="deterministic algorithms only (torch, cuDNN, cuBLAS)")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto",
        description="forward pass in bf16 / fp16 (CUDA only) or fp32; auto: bf16 on CUDA and on CPUs with "
        "bf16 instructions, else fp32",
    )
    checkpoint_every_steps: int | None = Field(
        None,
        ge=1,
        le=MAX_STEPS,
        description="write the training checkpoint every N steps (besides each epoch's end), to resume",
    )
    keep_checkpoint: bool = Field(
        False, description="keep the training checkpoint when the run ends (by default it is removed)"
    )
    eval_ks: list[int] = Field(
        list(DEFAULT_KS), min_length=1, max_length=64, description=f"cut-offs k of the metrics (1 to {MAX_K})"
    )
    log_every: int | None = Field(
        None,
        ge=1,
        le=MAX_STEPS,
        description="log progress every N steps; unset: every step of the first 50, then one every 2 s and the last",
    )
    csv_options: CSVOptions = Field(default_factory=CSVOptions, description="how CSV files are read")
    run_name: str | None = Field(None, max_length=200, description="a name for the run")
    to_onnx: bool = Field(False, description="also export the tuned model to ONNX (artifact folder onnx/)")
    loggers: list[str] = Field(
        default_factory=list,
        description="experiment loggers (callbacks.loggers.LOGGERS: tensorboard, mlflow, wandb), offline, writing "
        "to the run's logs/<logger>/ folder",
    )
    wise_ft_alpha: float | None = Field(
        None, gt=0, le=1, description="WiSE-FT: the saved weights are (1 - alpha) * initial + alpha * fine-tuned"
    )
    distributed: DistributedSetting = Field(
        default_factory=DistributedSettings, description="several processes or machines (torchrun): docs/DISTRIBUTED.md"
    )

    @model_validator(mode="before")
    @classmethod
    def _aliases(cls, data: Any) -> Any:
        """Finetuner's ``optimizer_options={'layer_wise_lr_decay': d}`` is ``layer_lr_decay=d``."""
        options = data.get("optimizer_options") if isinstance(data, dict) else None
        if not isinstance(options, dict) or not set(options) & set(OPTIMIZER_ALIASES):
            return data
        data, options = dict(data), dict(options)
        for alias, field in OPTIMIZER_ALIASES.items():
            if alias in options:
                value = options.pop(alias)
                if data.get(field) is not None and data[field] != value:
                    raise FieldError(
                        field,
                        f"set both as {field} ({data[field]}) and as optimizer_options {alias} ({value}); set one",
                    )
                data[field] = value
        data["optimizer_options"] = options
        return data

    @field_serializer("model_options")
    def _given_options(self, options: ModelOptions) -> dict[str, Any]:
        """Only the model options that were set: the service tells them from defaults (a run continued from an
        earlier one keeps that run's options unless new ones are given)."""
        return options.model_dump(mode="json", exclude_unset=True)

    @field_validator("model")
    @classmethod
    def _named_model(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must name a registered backbone or a local model folder, got an empty name")
        if value != value.strip() or any(not c.isprintable() for c in value):
            raise ValueError(f"a model name has no surrounding spaces or control characters, got {value!r}")
        return value

    @field_validator("loss")
    @classmethod
    def _known_loss(cls, value: str | None) -> str | None:
        return None if value is None else known(value, choices.LOSS_NAMES, "loss")

    @field_validator("miner")
    @classmethod
    def _known_miner(cls, value: str | None) -> str | None:
        return None if value is None else known(value, choices.MINER_NAMES, "miner")

    @field_validator("sampler")
    @classmethod
    def _known_sampler(cls, value: str) -> str:
        return known(value, choices.SAMPLER_NAMES, "sampler")

    @field_validator("optimizer")
    @classmethod
    def _known_optimizer(cls, value: str) -> str:
        return known(value, choices.OPTIMIZER_NAMES, "optimizer")

    @field_validator("scheduler")
    @classmethod
    def _known_scheduler(cls, value: str) -> str:
        return known(value, choices.SCHEDULER_NAMES, "scheduler")

    @field_validator("loggers")
    @classmethod
    def _known_loggers(cls, value: list[str]) -> list[str]:
        return list(dict.fromkeys(known(name, choices.LOGGER_NAMES, "logger") for name in value))

    @field_validator("monitor")
    @classmethod
    def _known_monitor(cls, value: str) -> str:
        if not is_monitor(value):
            raise ValueError(monitor_problem(value))
        return value

    @field_validator("eval_ks")
    @classmethod
    def _positive_ks(cls, value: list[int]) -> list[int]:
        if any(k < 1 or k > MAX_K for k in value):
            raise ValueError(f"every k must be between 1 and {MAX_K}, got {value}")
        return sorted(set(value))

    @model_validator(mode="after")
    def _consistent(self) -> FitSettings:
        if self.sampler == "class" and self.batch_size is not None and self.batch_size % self.num_items_per_class:
            raise ValueError(
                f"batch_size ({self.batch_size}) must be a multiple of num_items_per_class "
                f"({self.num_items_per_class}) with the class sampler"
            )
        if self.precision == "fp16" and self.device == "cpu":
            raise FieldError(
                "precision", "'fp16' needs CUDA (it trains with loss scaling on the GPU); use bf16 or fp32"
            )
        if (loss := self.known_loss) is not None:  # else known once the model is resolved (checked again then)
            _check_option_names("loss_options", loss, self.loss_options, choices.LOSS_OPTIONS[loss])
        self._check_miner()
        allowed = choices.SCHEDULER_OPTIONS[self.scheduler]
        _check_option_names("scheduler_options", f"scheduler {self.scheduler}", self.scheduler_options, allowed)
        k = cut_off(self.monitor)
        if k is not None and k not in self.eval_ks:
            raise FieldError("monitor", f"{self.monitor!r} needs its cut-off in eval_ks ({self.eval_ks})")
        named = expected_modality(self.model)
        if self.model_modality is not None and named is not None and self.model_modality != named:
            raise FieldError("model_modality", f"{self.model!r} takes {named}, not {self.model_modality}")
        locking = self.model_options.locking()
        if locking and self.whole_modality not in ("text-image", None):
            raise ValueError(f"model_options {', '.join(locking)}: only for CLIP models, not {self.model!r}")
        self._check_trainable()
        return self

    def _check_miner(self) -> None:
        if self.miner is None:
            if self.miner_options:
                raise FieldError("miner_options", "given, but miner is None: there is no miner to take them")
            return
        if self.miner_options and self.loss is not None and self.loss not in choices.MINED_LOSSES:
            raise FieldError("miner_options", f"given, but the loss {self.loss} uses no miner")
        _check_option_names("miner_options", self.miner, self.miner_options, choices.MINER_OPTIONS[self.miner])

    def _check_trainable(self) -> None:
        """``freeze=True`` freezes the whole backbone: something else must train (a projection head)."""
        options = self.model_options
        if options.freeze is not True:
            return
        if canonical(self.model) == DEFAULT_CLIP_MODEL:
            raise FieldError(
                "model_options.freeze",
                f"True freezes all of {self.model!r}, its projections included, leaving nothing to train; "
                "use lock_image / lock_text to freeze a tower",
            )
        if not options.output_dim:
            raise FieldError(
                "model_options.freeze",
                "True freezes the whole backbone and leaves nothing to train; add a trainable projection head "
                "(output_dim=...) or freeze some layer groups (a list of names)",
            )

    @property
    def whole_modality(self) -> str | None:
        """What the whole model takes (before ``select_model`` picks a tower): the service's resolution, else what
        the name alone says; None while neither is known."""
        return self.model_modality or expected_modality(self.model)

    @property
    def modality(self) -> str:
        """What the model takes: text, image, vector or text-image (pairs). A name only the service can resolve (a
        Hugging Face id, a stored model, a run) has none until it did: :class:`ConfigError`."""
        if self.model_options.select_model is not None:
            return expected_modality(self.model, self.model_options.select_model)
        modality = self.whole_modality
        if modality is None:
            raise ConfigError(
                f"model {self.model!r}: what it takes (text, image, text-image) is known once the service resolves "
                "it: log in to a Flow (finetuner.login) so that it can, or set model_modality"
            )
        return modality

    @property
    def loss_name(self) -> str:
        """The loss named, else the default for what the model takes: text-image pairs or labeled items (a fit's
        data settles it for query-document and scored pairs: data.fit_settings)."""
        return self.loss_for(TEXT_IMAGE if self.modality == "text-image" else LABELED)

    @property
    def known_loss(self) -> str | None:
        """:attr:`loss_name`, or None while the model's modality (which picks the default loss) is not known."""
        if self.loss is None and self.model_options.select_model is None and self.whole_modality is None:
            return None
        return self.loss_name

    def loss_for(self, shape: str) -> str:
        """The loss named, else the default loss for data of ``shape`` (``finetuner_protocol.shapes``)."""
        return self.loss if self.loss is not None else SHAPES[shape].default_loss

    @property
    def monitor_mode(self) -> Literal["min", "max"]:
        """The loss should fall, every retrieval metric should rise."""
        return "min" if self.monitor == "loss" else "max"

    @property
    def uses_miner(self) -> bool:
        return self.miner is not None and self.loss_name in choices.MINED_LOSSES


def known(value: str, allowed: Iterable[str], what: str) -> str:
    """``value`` when it is one of ``allowed``; else a ValueError listing them, with the closest one."""
    names = list(allowed)
    if value in names:
        return value
    by_lower = {name.lower(): name for name in names}
    guess = difflib.get_close_matches(value.lower(), list(by_lower), 1, cutoff=0.8)
    hint = f"; did you mean {by_lower[guess[0]]!r}?" if guess else ""
    raise ValueError(f"unknown {what} {value!r}; allowed: {', '.join(names)}{hint}")


def _check_option_names(field: str, owner: str, options: dict[str, Any], allowed: tuple[str, ...]) -> None:
    """Refuse, about ``field``, options that ``owner`` does not take, naming those it does."""
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise FieldError(
            field, f"{owner} has no option(s) {', '.join(unknown)}; allowed: {', '.join(allowed) or 'none'}"
        )


Settings = TypeVar("Settings", bound=FitSettings)


def parse_settings(parameters: dict[str, Any]) -> FitSettings:
    """Validate ``parameters`` into :class:`FitSettings`, or raise :class:`ConfigError` naming each field."""
    return validate_settings(FitSettings, parameters)


def validate_settings(schema: type[Settings], parameters: dict[str, Any]) -> Settings:
    """``parameters`` validated into ``schema`` (:class:`FitSettings` or a class that adds checks to it), or a
    :class:`ConfigError` with one line per refused field: ``  field: reason``."""
    try:
        return schema.model_validate(parameters)
    except ValidationError as exc:
        lines = [f"  {_where(e)}: {_reason(e)}" for e in exc.errors()]
        raise ConfigError("invalid fit configuration:\n" + "\n".join(lines)) from None


def _where(error: Any) -> str:
    """The field an error is about: where pydantic found it, and the field a :class:`FieldError` names."""
    cause = (error.get("ctx") or {}).get("error")
    path = [*map(str, error["loc"]), *([cause.field] if isinstance(cause, FieldError) else [])]
    return ".".join(path) or "config"


def _reason(error: Any) -> str:
    """Pydantic's message, without the ``Value error, `` it puts before the reasons the validators give."""
    message = error["msg"]
    return message.removeprefix("Value error, ") if error.get("type") == "value_error" else message
