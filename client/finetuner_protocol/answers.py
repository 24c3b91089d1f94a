"""What every endpoint answers, typed: the executors build their answers through these models (nothing leaves the
service that the protocol does not name) and the client reads them back with :func:`read_answer`.

An answer travels as one ``result`` document whose payload is the model's fields as JSON (``wire.result_docs``);
a field the service leaves out (a run's ``error`` before it fails) is left out of the payload too. :data:`ANSWERS`
names each endpoint's answer.
"""

from __future__ import annotations

import enum
from typing import Any, Final, TypeVar

from docarray import DocList
from pydantic import BaseModel, ConfigDict, Field, RootModel, ValidationError, model_validator

from finetuner_protocol import endpoints
from finetuner_protocol.runs import RunStatus
from finetuner_protocol.wire import FinetunerDoc, read_result, result_docs

Metrics = dict[str, int | float]  # metric key (``mrr@10``, ``spearman``, ``queries``) -> value
A = TypeVar("A", bound=BaseModel)


class Answer(BaseModel):
    """An endpoint's answer: exactly the fields the protocol names."""

    model_config = ConfigDict(extra="forbid")


# --- datasets -------------------------------------------------------------------------------------------------
class DatasetStatus(enum.StrEnum):
    UPLOADING = "UPLOADING"  # batches are still coming
    READY = "READY"  # checked as a whole, usable by a fit


class DatasetRecord(Answer):
    """A stored dataset (``/datasets/begin``, ``/datasets/upload``, ``/datasets/commit``): a finished one holds
    every batch; an unfinished one says which batches it still lacks."""

    id: str = Field(..., description="the dataset id (ids.DATASET_ID)")
    name: str
    status: DatasetStatus
    batches: int = Field(..., description="the batches of the upload")
    items: int = Field(..., description="the items of the finished dataset (0 while it uploads)")
    bytes: int = Field(..., description="its stored size (0 while it uploads)")
    content_sha256: str | None = Field(..., description="the digest of its content, once finished")
    created_at: float
    updated_at: float
    stored: list[int] = Field(..., description="the indices of the batches stored")
    missing: list[int] = Field(..., description="the indices of the batches still to upload")


class DatasetList(Answer):
    """``/datasets/list``: the user's datasets, oldest first."""

    datasets: list[DatasetRecord]


class DatasetDeleted(Answer):
    """``/datasets/delete``."""

    dataset_id: str
    deleted: bool


# --- fit settings ---------------------------------------------------------------------------------------------
class ConfigChecked(Answer):
    """``/config/check``: the fit's settings as the trainer would run them (every default filled in; the operator's
    settings for runs that span several machines left out)."""

    config: dict[str, Any]


# --- models ---------------------------------------------------------------------------------------------------
class ModelDescription(Answer):
    """One model as the trainer sees it now: what it is and where its weights would come from."""

    name: str = Field(..., description="the name asked for")
    stands_for: str | None = Field(None, description="the id a Finetuner model name stands for")
    family: str | None = Field(None, description="the model family that builds it (None: unknown, unavailable)")
    modality: str | None = Field(None, description="what it takes: text, image, vector, text-image")
    output_dim: int | None = Field(None, description="its embedding size, where known without building it")
    parameters: str | None = Field(None, description="its size in parameters (e.g. 22.7M), where known")
    where: str = Field(..., description="one of WHERE: where the weights would come from now")
    revision: str | None = Field(None, description="the cache's or store's commit hash or sha256 digest")
    detail: str | None = Field(None, description="for an unavailable model, what to do")


class ModelsDescribed(Answer):
    """``/models/describe``."""

    models: list[ModelDescription]


# --- runs -----------------------------------------------------------------------------------------------------
class RunRecord(Answer):
    """A run's status record (``/fit``, ``/runs/cancel``; every entry of ``/runs/list``)."""

    run_id: str = Field(..., description="the run id (ids.RUN_ID)")
    name: str | None = Field(..., description="the fit's run_name")
    experiment: str
    status: RunStatus
    created_at: float
    updated_at: float
    started_at: float | None
    finished_at: float | None
    error: str | None = Field(None, description="why the run failed (only in a FAILED run's record)")


class RunInfo(RunRecord):
    """``/runs/status``: the status record and the run's fit configuration."""

    config: dict[str, Any] = Field(..., description="the run's validated fit settings")


class LogEntry(Answer):
    """One entry of a run's log: its text line and its structured record (``finetuner_protocol.logs.read_record``
    reads it, a kind it does not know as a message; None for an entry written before logs held records)."""

    time: float = Field(..., description="when it was logged (seconds since the epoch)")
    message: str = Field(..., description="the entry as one line of text")
    record: dict[str, Any] | None = Field(None, description="the entry's fields, with its kind")


class RunLogs(RunRecord):
    """``/runs/logs``: the entries from ``since`` on, and the run's status record (a reader stops at a final
    status once no entry is left)."""

    logs: list[LogEntry]


class RunMetrics(RootModel[dict[str, Metrics]]):
    """``/runs/metrics``: ``{stage: {metric: value}}`` in the order the stages were recorded (``runs.STAGE_BEFORE``,
    ``runs.step_stage(n)``, ``runs.STAGE_AFTER``)."""


class RunList(Answer):
    """``/runs/list``: one page of runs, the number of runs the filters match, and the page's offset."""

    runs: list[RunRecord]
    total: int
    offset: int


class RunDeleted(Answer):
    """``/runs/delete``."""

    run_id: str
    deleted: bool


class ManifestEntry(Answer):
    path: str = Field(..., description="the file's path inside the artifact")
    size: int
    sha256: str


class ArtifactAnswer(Answer):
    """``/runs/artifact``: without ``path`` the manifest (``files``); with it one chunk of that file, its bytes in
    the result document's ``blob``."""

    files: list[ManifestEntry] | None = None
    path: str | None = None
    offset: int | None = None
    length: int | None = Field(None, description="the bytes of the chunk (fewer than asked at the file's end)")

    @model_validator(mode="after")
    def _one_form(self) -> ArtifactAnswer:
        chunk = (self.path, self.offset, self.length)
        manifest = self.files is not None and chunk == (None, None, None)
        if not manifest and (self.files is not None or None in chunk):
            raise ValueError("an artifact answer is a manifest (files) or a chunk (path, offset, length)")
        return self


# --- experiments ----------------------------------------------------------------------------------------------
class ExperimentRecord(Answer):
    """``/experiments/create``, ``/experiments/get``: an experiment and the number of its runs."""

    name: str
    created_at: float
    runs: int


class ExperimentList(Answer):
    """``/experiments/list``."""

    experiments: list[ExperimentRecord]


class ExperimentDeleted(Answer):
    """``/experiments/delete``."""

    name: str
    deleted: bool


# --- evaluation and search ------------------------------------------------------------------------------------
class ModelScores(Answer):
    """One model's column of an evaluation."""

    name: str
    metrics: Metrics
    examples: list[dict[str, Any]] = Field(..., description="sample queries with their top results")


class EvaluateAnswer(Answer):
    """``/evaluate``: the first model's ``metrics`` and ``examples`` (one model reads as one), every model's
    scores, warnings about the data, and the sizes of the query and index sets."""

    metrics: Metrics
    examples: list[dict[str, Any]]
    models: list[ModelScores]
    changes: list[dict[str, Any]] = Field(
        default_factory=list,
        description="with two models or more: the queries whose top results changed most from the first model to the "
        "second, with both rankings (each result's label and relevance)",
    )
    relevance: str = Field(..., description="how results were judged: label, pairs, or graded")
    warnings: list[str]
    queries: int
    index: int
    items: int


class SearchHit(Answer):
    id: int = Field(..., description="the item's place in the index")
    score: float
    name: str | None = None
    label: str | None = None


class SearchAnswer(Answer):
    """``/search``: the top k of every query over the whole index, however many shards served it."""

    k: int
    total: int = Field(..., description="the items of the index")
    shards: int
    scores: list[list[float]]
    ids: list[list[int]]
    results: list[list[SearchHit]]


class ShardItem(Answer):
    name: str | None
    label: str | None


class ShardSearchAnswer(Answer):
    """One evaluator shard's part of a ``/search`` (to the evaluator that merges them): its top k with global ids,
    and the items it returns."""

    shard: int
    shards: int
    total: int
    scores: list[list[float]]
    ids: list[list[int]]
    items: dict[str, ShardItem] = Field(..., description="by global id (as a string)")


ANSWERS: Final[dict[str, type[BaseModel]]] = {
    endpoints.DATASETS_BEGIN: DatasetRecord,
    endpoints.DATASETS_UPLOAD: DatasetRecord,
    endpoints.DATASETS_COMMIT: DatasetRecord,
    endpoints.DATASETS_LIST: DatasetList,
    endpoints.DATASETS_DELETE: DatasetDeleted,
    endpoints.CONFIG_CHECK: ConfigChecked,
    endpoints.MODELS_DESCRIBE: ModelsDescribed,
    endpoints.FIT: RunRecord,
    endpoints.RUNS_STATUS: RunInfo,
    endpoints.RUNS_LOGS: RunLogs,
    endpoints.RUNS_METRICS: RunMetrics,
    endpoints.RUNS_LIST: RunList,
    endpoints.RUNS_CANCEL: RunRecord,
    endpoints.RUNS_DELETE: RunDeleted,
    endpoints.RUNS_ARTIFACT: ArtifactAnswer,
    endpoints.EXPERIMENTS_CREATE: ExperimentRecord,
    endpoints.EXPERIMENTS_GET: ExperimentRecord,
    endpoints.EXPERIMENTS_LIST: ExperimentList,
    endpoints.EXPERIMENTS_DELETE: ExperimentDeleted,
    endpoints.EVALUATE: EvaluateAnswer,
    endpoints.SEARCH: SearchAnswer,
}


class AnswerError(RuntimeError):
    """An answer the service built that does not match its model: a fault of the service, not of the request."""


def answer_payload(model: type[BaseModel], payload: Any) -> Any:
    """``payload`` checked against ``model``, as the JSON-ready value that travels (the fields it gave only);
    :class:`AnswerError` naming the first field that does not match."""
    try:
        return model.model_validate(payload).model_dump(exclude_unset=True)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(map(str, error["loc"])) or "answer"
        raise AnswerError(
            f"the service's {model.__name__} answer does not match the protocol: {where}: {error['msg']}"
        ) from None


def answer_docs(model: type[BaseModel], payload: Any, blob: bytes | None = None) -> DocList[FinetunerDoc]:
    """An executor's answer: ``payload`` checked against ``model``, as one result document."""
    return result_docs(answer_payload(model, payload), blob)


def read_answer(model: type[A], docs: DocList[FinetunerDoc]) -> A:
    """The answer of a request (its first result document) as ``model``."""
    return model.model_validate(read_result(docs))
