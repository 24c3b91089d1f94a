"""A run's log as structured records: what the trainer writes and what the client reads, field by field.

Each entry of a run's log is one record: its ``kind`` says what happened and its fields say the rest (a training
step's ``step``, ``total_steps``, ``epoch``, ``loss``, ``learning_rate``, ``elapsed_s``, ``eta_s``; an evaluation's
``stage`` and ``metrics``; ...). Every record also reads as one line of text (:meth:`LogRecord.text`), the line
``finetuner runs logs`` prints; the service stores both, and a client reads the fields, never the text.

Kinds: ``message`` (anything else), ``note`` (how the data was sampled, how a setting was resolved), ``building``
(the model is being built), ``download`` (how far the download of the model's weights is), ``evaluating`` (an
evaluation stage begins), ``metrics`` (its results), ``train_begin`` (the length of training), ``step``
(progress), ``train_end``, ``best_model`` (the best checkpoint is kept instead of the last weights), ``saved``
(the artifact is written).
"""

from __future__ import annotations

import math
from typing import Annotated, Any, ClassVar, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

SHOWN_METRICS = ("precision@1", "mrr@", "spearman")  # the metrics a ``metrics`` record's text line names


class LogRecordError(ValueError):
    """A log entry whose record does not read as the kind it names."""


class LogRecord(BaseModel):
    """One entry of a run's log. ``phase`` (None: none) is the part of the run a record starts, for a progress
    display: ``building``, ``evaluating``, ``training``, ``saving``."""

    model_config = ConfigDict(extra="forbid", frozen=True, ser_json_inf_nan="constants")
    phase: ClassVar[str | None] = None

    def text(self) -> str:
        """The record as one line of text."""
        raise NotImplementedError


class Message(LogRecord):
    kind: Literal["message"] = "message"
    message: str

    def text(self) -> str:
        return self.message


class Note(LogRecord):
    """How the data was sampled or a setting resolved (e.g. classes smaller than ``num_items_per_class``)."""

    kind: Literal["note"] = "note"
    note: str

    def text(self) -> str:
        return f"note: {self.note}"


class Building(LogRecord):
    kind: Literal["building"] = "building"
    phase: ClassVar[str | None] = "building"
    model: str
    device: str

    def text(self) -> str:
        return f"building model {self.model!r} on device {self.device!r}"


class Download(LogRecord):
    """How far the download of ``model``'s weights is: ``done_bytes`` of ``total_bytes`` (the whole model, files
    already here included), now in ``file``, at ``rate_bps`` (bytes per second over the ``elapsed_s`` of this
    download). ``waiting``: another process is downloading the same model; this one waits for its copy."""

    kind: Literal["download"] = "download"
    model: str
    file: str = ""
    done_bytes: int = Field(default=0, ge=0)
    total_bytes: int = Field(default=0, ge=0)
    rate_bps: float = Field(default=0.0, ge=0)
    elapsed_s: float = Field(default=0.0, ge=0)
    waiting: bool = False

    @property
    def complete(self) -> bool:
        return not self.waiting and self.done_bytes >= self.total_bytes

    def text(self) -> str:
        if self.waiting:
            return f"waiting for {self.model}: another process is downloading it"
        size, rate = f"{self.total_bytes / 1e6:.1f} MB", f"{self.rate_bps / 1e6:.1f} MB/s"
        if self.complete:
            return f"downloaded {self.model}: {size} in {self.elapsed_s:.0f}s, {rate}"
        file = f" ({self.file})" if self.file else ""
        return f"downloading {self.model}{file}: {self.done_bytes / 1e6:.1f}/{size}, {rate}"


class Evaluating(LogRecord):
    """An evaluation begins: ``stage`` is ``before``, ``step N`` or ``after`` (finetuner_protocol.runs)."""

    kind: Literal["evaluating"] = "evaluating"
    phase: ClassVar[str | None] = "evaluating"
    stage: str
    items: int = Field(ge=0)

    def text(self) -> str:
        return f"evaluating ({self.stage}) on {self.items} items"


class Metrics(LogRecord):
    """An evaluation's results at ``stage``; the text line names the headline metrics only."""

    kind: Literal["metrics"] = "metrics"
    stage: str
    metrics: dict[str, float]

    def text(self) -> str:
        shown = ", ".join(f"{k} {v:.4f}" for k, v in self.metrics.items() if k.startswith(SHOWN_METRICS))
        return f"metrics {self.stage}: {shown}"


class TrainBegin(LogRecord):
    kind: Literal["train_begin"] = "train_begin"
    phase: ClassVar[str | None] = "training"
    epochs: int = Field(ge=0)
    total_steps: int = Field(ge=0)
    batch_size: int | None = None
    precision: str

    def text(self) -> str:
        batch = f", batch size {self.batch_size}" if self.batch_size else ""
        return f"training: {self.epochs} epoch(s), {self.total_steps} steps{batch}, {self.precision}"


class Step(LogRecord):
    """Where training is after ``step`` of ``total_steps`` steps; ``epoch`` counts from 1. ``eta_s``: the time
    left, estimated from the time so far."""

    kind: Literal["step"] = "step"
    step: int = Field(ge=0)
    total_steps: int = Field(ge=0)
    epoch: int = Field(ge=0)
    epochs: int = Field(ge=0)
    loss: float
    learning_rate: float
    elapsed_s: float = math.nan
    eta_s: float = math.nan

    def text(self) -> str:
        return (
            f"step {self.step}/{self.total_steps} epoch {self.epoch}/{self.epochs} "
            f"loss {self.loss:.4f} lr {self.learning_rate:.2e} elapsed {self.elapsed_s:.0f}s eta {self.eta_s:.0f}s"
        )


class TrainEnd(LogRecord):
    kind: Literal["train_end"] = "train_end"
    steps: int = Field(ge=0)
    elapsed_s: float

    def text(self) -> str:
        return f"training done: {self.steps} steps in {self.elapsed_s:.1f}s"


class BestModel(LogRecord):
    """The weights with the best ``monitor`` value (at ``step``; 0: the pretrained model) are kept instead of
    those of the last step, whose value is ``last_value`` (None: not measured there)."""

    kind: Literal["best_model"] = "best_model"
    monitor: str
    value: float
    step: int = Field(ge=0)
    last_step: int = Field(ge=0)
    last_value: float | None = None

    def text(self) -> str:
        when = "before training (the pretrained model)" if self.step == 0 else f"at step {self.step}"
        last = f"{self.last_value:.4f}" if self.last_value is not None else "not measured"
        return f"keeping the best model, {self.monitor} {self.value:.4f} {when}; at step {self.last_step}: {last}"


class Saved(LogRecord):
    kind: Literal["saved"] = "saved"
    phase: ClassVar[str | None] = "saving"
    files: int = Field(ge=0)
    size_bytes: int = Field(ge=0)

    def text(self) -> str:
        return f"model saved: {self.files} files, {self.size_bytes / 1e6:.1f} MB"


RECORD_TYPES: tuple[type[LogRecord], ...] = (
    Message,
    Note,
    Building,
    Download,
    Evaluating,
    Metrics,
    TrainBegin,
    Step,
    TrainEnd,
    BestModel,
    Saved,
)
KINDS = frozenset(kind.model_fields["kind"].default for kind in RECORD_TYPES)
_RECORD: TypeAdapter[LogRecord] = TypeAdapter(Annotated[Union[RECORD_TYPES], Field(discriminator="kind")])  # noqa: UP007


def as_record(entry: LogRecord | str) -> LogRecord:
    """``entry`` as a record: a plain text line is a ``message``."""
    return entry if isinstance(entry, LogRecord) else Message(message=entry)


def read_record(entry: dict[str, Any]) -> LogRecord:
    """The record of a log entry as the service answers it (``{"time", "message", "record"}``).

    An entry without a record (written before logs held records), or of a kind this client does not know (a newer
    service), reads as a ``message`` with its text line. A record that does not read as the kind it names raises
    :class:`LogRecordError`.
    """
    record = entry.get("record")
    if not isinstance(record, dict) or record.get("kind") not in KINDS:
        return Message(message=str(entry.get("message", "")))
    try:
        return _RECORD.validate_python(record)
    except ValidationError as exc:
        error = exc.errors()[0]
        field = ".".join(str(part) for part in error["loc"][1:]) or "record"
        raise LogRecordError(
            f"log entry {entry.get('message')!r}: {record['kind']} record, {field}: {error['msg']}"
        ) from None
