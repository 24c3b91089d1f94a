"""The parameters of every endpoint, typed and bounded: a request that sends a string where a dict belongs, a
negative page size or a plan of ten million batches is refused with one line naming the parameter.

The client builds its requests from these models, and each executor parses ``parameters`` with
:func:`parse_params` and the model of its endpoint (:data:`PARAMS`). Every model takes what the client sends to
that endpoint (a request passes every executor of the Flow with the same parameters); jina's own keys
(``__results__`` ...) are left out. The token is read first, alone (:func:`request_token`): a request that is not
authenticated learns nothing about its other parameters.

The fit configuration travels as a dict (``config``); the service parses it whole, naming every bad setting.
"""

from __future__ import annotations

from typing import Annotated, Any, Final, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from finetuner_protocol import endpoints
from finetuner_protocol.ids import MAX_ID_LENGTH

MAX_BATCHES: Final = 100_000  # batches of one dataset upload
MAX_PAGE: Final = 500  # runs in one page of /runs/list
MAX_NAME: Final = 200  # names of datasets and experiments
MAX_ID: Final = MAX_ID_LENGTH  # run and dataset ids (checked against their pattern by their stores)
MAX_OFFSET: Final = 2**62  # byte offsets and log positions

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
    """A request that names a model and reads data for it."""

    config: dict[str, Any] = Field(default_factory=dict, description="the fit configuration (FitConfig)")


class DescribeModelsParams(EndpointParams):
    """``/models/describe``: the named models (None: every registered backbone, Finetuner name and stored model)."""

    names: list[Annotated[str, Field(min_length=1, max_length=4096)]] | None = Field(
        None, max_length=100, description="model names: registered, Finetuner's, Hugging Face ids, runs, folders"
    )
    model_options: dict[str, Any] = Field(default_factory=dict, description="options of the named models (weights ...)")


# --- datasets -------------------------------------------------------------------------------------------------
class DatasetPlan(BaseModel):
    """An upload about to start (or to continue: the same ``upload_key`` resumes it)."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, max_length=MAX_NAME, description="the dataset's name, shown in lists")
    upload_key: str = Field(..., min_length=1, max_length=128, description="the SHA-256 of the whole content")
    batches: Integer = Field(..., ge=1, le=MAX_BATCHES, description="the batches the upload will send")


class BeginParams(EndpointParams):
    """``/datasets/begin``: start or resume an upload."""

    dataset: DatasetPlan


class DatasetBatch(BaseModel):
    """One batch of an upload; the request's documents are its items."""

    model_config = ConfigDict(extra="forbid")

    id: Id = Field(..., min_length=1, max_length=MAX_ID, description="the dataset id /datasets/begin answered")
    index: Integer = Field(..., ge=0, lt=MAX_BATCHES, description="the batch's place in the upload, from 0")
    items: Integer | None = Field(None, ge=0, description="the items the client sent in this batch")
    sha256: str | None = Field(None, max_length=64, description="the digest of the batch's records")


class UploadParams(WithConfig):
    """``/datasets/upload``: one batch, read for the model of ``config`` (its modality, its CSV options)."""

    dataset: DatasetBatch


class DatasetRef(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: Id = Field(..., min_length=1, max_length=MAX_ID, description="a dataset id")


class CommitParams(EndpointParams):
    """``/datasets/commit``: every batch is stored; check the whole dataset and keep it."""

    dataset: DatasetRef


class DeleteDatasetParams(EndpointParams):
    """``/datasets/delete``."""

    dataset_id: Id = Field(..., min_length=1, max_length=MAX_ID, description="a dataset id")


# --- fit and runs ---------------------------------------------------------------------------------------------
class FitParams(WithConfig):
    """``/fit``: train a model on stored datasets (or on the request's documents, when it has some)."""

    train_dataset: Id | None = Field(None, min_length=1, max_length=MAX_ID, description="the training dataset's id")
    eval_dataset: Id | None = Field(None, min_length=1, max_length=MAX_ID, description="the evaluation dataset's id")
    experiment: str | None = Field(None, max_length=MAX_NAME, description="the run's experiment (else 'default')")


class RunParams(EndpointParams):
    """The endpoints about one run: ``/runs/status``, ``/runs/metrics``, ``/runs/cancel``, ``/runs/delete``."""

    run_id: Id = Field(..., min_length=1, max_length=MAX_ID, description="a run id")


class LogsParams(RunParams):
    """``/runs/logs``: the run's log entries from ``since`` on."""

    since: Integer = Field(0, ge=0, le=MAX_OFFSET, description="log entries already read")


class ListRunsParams(EndpointParams):
    """``/runs/list``: one page of the user's runs, oldest first."""

    limit: Integer = Field(50, ge=1, le=MAX_PAGE, description="runs in the page")
    offset: Integer = Field(0, ge=0, le=MAX_OFFSET, description="runs skipped before the page")
    experiment: str | None = Field(None, max_length=MAX_NAME, description="only the runs of this experiment")
    status: str | None = Field(None, max_length=20, description="only the runs of this status (a RunStatus)")


class ArtifactParams(RunParams):
    """``/runs/artifact``: without ``path`` the manifest, with ``path`` one chunk of that file from ``offset``."""

    path: str | None = Field(None, min_length=1, max_length=1000, description="a file of the manifest")
    offset: Integer = Field(0, ge=0, le=MAX_OFFSET, description="the chunk's first byte")


class ExperimentParams(EndpointParams):
    """``/experiments/create``, ``/experiments/get``, ``/experiments/delete``."""

    name: str = Field(..., min_length=1, max_length=MAX_NAME, description="the experiment's name")


# --- evaluation and search ------------------------------------------------------------------------------------
class EvaluateParams(WithConfig):
    """``/evaluate``: score one model (``config.model``, or a run's by ``run_id``), a query and an index model, or
    several ``models`` side by side on the request's evaluation data."""

    run_id: Id | None = Field(None, min_length=1, max_length=MAX_ID, description="a run whose model is scored")
    models: list[str | dict[str, Any]] | None = Field(
        None, max_length=20, description="models scored side by side: names, or dicts like query_model"
    )
    query_model: dict[str, Any] | None = Field(
        None, description="the model of the queries: {'model', 'model_options'} or {'run_id'}"
    )
    index_model: dict[str, Any] | None = Field(None, description="the model of the index, like query_model")
    evaluation: dict[str, Any] | None = Field(None, description="metric, index kind and its options, examples shown")


class SearchParams(EvaluateParams):
    """``/search``: the top k of each query over an index, with the models of ``/evaluate``."""

    search: dict[str, Any] | None = Field(None, description="k, metric, dataset_id (a stored index), batch_size")


PARAMS: Final[dict[str, type[EndpointParams]]] = {
    endpoints.DATASETS_BEGIN: BeginParams,
    endpoints.DATASETS_UPLOAD: UploadParams,
    endpoints.DATASETS_COMMIT: CommitParams,
    endpoints.DATASETS_LIST: EndpointParams,
    endpoints.DATASETS_DELETE: DeleteDatasetParams,
    endpoints.CONFIG_CHECK: WithConfig,
    endpoints.MODELS_DESCRIBE: DescribeModelsParams,
    endpoints.FIT: FitParams,
    endpoints.RUNS_STATUS: RunParams,
    endpoints.RUNS_LOGS: LogsParams,
    endpoints.RUNS_METRICS: RunParams,
    endpoints.RUNS_LIST: ListRunsParams,
    endpoints.RUNS_CANCEL: RunParams,
    endpoints.RUNS_DELETE: RunParams,
    endpoints.RUNS_ARTIFACT: ArtifactParams,
    endpoints.EXPERIMENTS_CREATE: ExperimentParams,
    endpoints.EXPERIMENTS_GET: ExperimentParams,
    endpoints.EXPERIMENTS_LIST: EndpointParams,
    endpoints.EXPERIMENTS_DELETE: ExperimentParams,
    endpoints.EVALUATE: EvaluateParams,
    endpoints.SEARCH: SearchParams,
}


def request_token(parameters: Any) -> object:
    """The token a request carries, as sent (the users store refuses anything but a known token)."""
    return parameters.get("token") if isinstance(parameters, dict) else None


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
