"""The parameters of every endpoint, typed and bounded: a request that sends a string where a dict belongs, a
negative page size or a plan of ten million batches is refused with one line naming the parameter.

Each executor parses ``parameters`` with :func:`parse_params` and the model of its endpoint. Every model takes
what the client sends to that endpoint (a request passes every executor of the Flow with the same parameters);
jina's own keys (``__results__`` ...) are left out.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from finetuner_core.config import FitConfig, parse_fit_config
from finetuner_protocol.backbones import check_model_source

MAX_BATCHES = 100_000  # batches of one dataset upload
MAX_PAGE = 500  # runs in one page of /runs/list
MAX_NAME = 200  # names of datasets and experiments
MAX_ID = 100  # run and dataset ids (checked against their pattern by their stores)
MAX_OFFSET = 2**62  # byte offsets and log positions

Params = TypeVar("Params", bound="EndpointParams")


def _integer(value: Any) -> int:
    """An integer; gRPC's Struct carries every number as a float, so a whole float is one too."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**63:
        return int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError("must be an integer")
    return value


Integer = Annotated[int, BeforeValidator(_integer)]
Id = str


class EndpointParams(BaseModel):
    """What every request carries: the user's token."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    token: str | None = Field(None, description="the user's token (checked by the users store)")


class WithConfig(EndpointParams):
    config: dict[str, Any] = Field(default_factory=dict, description="the fit configuration (FitConfig)")


# --- datasets -------------------------------------------------------------------------------------------------
class DatasetPlan(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, max_length=MAX_NAME)
    upload_key: str = Field(..., min_length=1, max_length=128)
    batches: Integer = Field(..., ge=1, le=MAX_BATCHES)


class BeginParams(EndpointParams):
    dataset: DatasetPlan


class DatasetBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: Id = Field(..., min_length=1, max_length=MAX_ID)
    index: Integer = Field(..., ge=0, lt=MAX_BATCHES)
    items: Integer | None = Field(None, ge=0, description="the items the client sent in this batch")
    sha256: str | None = Field(None, max_length=64, description="the digest of the batch's records")


class UploadParams(WithConfig):
    dataset: DatasetBatch


class DatasetRef(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: Id = Field(..., min_length=1, max_length=MAX_ID)


class CommitParams(EndpointParams):
    dataset: DatasetRef


class DeleteDatasetParams(EndpointParams):
    dataset_id: Id = Field(..., min_length=1, max_length=MAX_ID)


# --- fit and runs ---------------------------------------------------------------------------------------------
class FitParams(WithConfig):
    train_dataset: Id | None = Field(None, min_length=1, max_length=MAX_ID)
    eval_dataset: Id | None = Field(None, min_length=1, max_length=MAX_ID)
    experiment: str | None = Field(None, max_length=MAX_NAME)


class RunParams(EndpointParams):
    run_id: Id = Field(..., min_length=1, max_length=MAX_ID)


class LogsParams(RunParams):
    since: Integer = Field(0, ge=0, le=MAX_OFFSET, description="log entries already read")


class ListRunsParams(EndpointParams):
    limit: Integer = Field(50, ge=1, le=MAX_PAGE)
    offset: Integer = Field(0, ge=0, le=MAX_OFFSET)
    experiment: str | None = Field(None, max_length=MAX_NAME)
    status: str | None = Field(None, max_length=20)


class ArtifactParams(RunParams):
    path: str | None = Field(None, min_length=1, max_length=1000, description="a file of the manifest")
    offset: Integer = Field(0, ge=0, le=MAX_OFFSET)


class ExperimentParams(EndpointParams):
    name: str = Field(..., min_length=1, max_length=MAX_NAME)


# --- evaluation and search ------------------------------------------------------------------------------------
class EvaluateParams(WithConfig):
    run_id: Id | None = Field(None, min_length=1, max_length=MAX_ID)
    models: list[str | dict[str, Any]] | None = Field(None, max_length=20)
    query_model: dict[str, Any] | None = None
    index_model: dict[str, Any] | None = None
    evaluation: dict[str, Any] | None = None


class SearchParams(EvaluateParams):
    search: dict[str, Any] | None = None


def fit_config(raw: dict[str, Any], model_roots: Iterable[Path]) -> FitConfig:
    """A request's fit configuration (ConfigError naming each bad field), its model and weights file from allowed
    places only (``models.registry.check_model_source``)."""
    config = parse_fit_config(raw)
    check_model_source(config.model, config.model_options.weights, model_roots)
    return config


def parse_params(model: type[Params], parameters: Any) -> Params:
    """``parameters`` as ``model``; ValueError with one line naming the first bad parameter."""
    if not isinstance(parameters, dict):
        raise ValueError(f"parameters must be a dict, got {type(parameters).__name__}")
    values = {key: value for key, value in parameters.items() if not str(key).startswith("__")}
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(map(str, error["loc"])) or "parameters"
        given = "" if error["type"] == "missing" else f", got {_short(error.get('input'))}"
        raise ValueError(f"parameter {where}: {_reason(error)}{given}") from None


def _reason(error: dict[str, Any]) -> str:
    if error["type"] == "extra_forbidden":
        return "unknown parameter"
    if error["type"] == "missing":
        return "required"
    if error["type"] in ("model_type", "dict_type"):
        return "must be a dict"
    message = str(error["msg"]).removeprefix("Value error, ")
    return message[:1].lower() + message[1:]


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
