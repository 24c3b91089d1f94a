"""Every endpoint of the Flow, by name: the executors serve these (``@requests(on=...)``) and the client posts to
them. Each endpoint's parameters are a model of :mod:`finetuner_protocol.params` and its answer one of
:mod:`finetuner_protocol.answers` (their tables ``PARAMS`` and ``ANSWERS`` are keyed by these names).

Which executor does what: the validator checks what users send (``FIT``, ``DATASETS_UPLOAD``, ``EVALUATE``), the
trainer stores datasets and runs and trains (``DATASETS_*``, ``CONFIG_CHECK``, ``MODELS_DESCRIBE``, ``FIT``, ``RUNS_*``,
``EXPERIMENTS_*``), the evaluator scores models and searches (``EVALUATE``, ``SEARCH``); every executor passes the
others through.
"""

from typing import Final

# datasets: a batched, resumable upload, then the stored datasets
DATASETS_BEGIN: Final = "/datasets/begin"
DATASETS_UPLOAD: Final = "/datasets/upload"
DATASETS_COMMIT: Final = "/datasets/commit"
DATASETS_LIST: Final = "/datasets/list"
DATASETS_DELETE: Final = "/datasets/delete"

# a fit's settings, checked by the service before any data is sent (what only its code and hardware can check)
CONFIG_CHECK: Final = "/config/check"

# models: what a name stands for and where the trainer would take its weights from (packaged, the store, the
# Hugging Face cache, a download), before anything is sent
MODELS_DESCRIBE: Final = "/models/describe"

# a fit, and the runs it creates
FIT: Final = "/fit"
RUNS_STATUS: Final = "/runs/status"
RUNS_LOGS: Final = "/runs/logs"
RUNS_METRICS: Final = "/runs/metrics"
RUNS_LIST: Final = "/runs/list"
RUNS_CANCEL: Final = "/runs/cancel"
RUNS_DELETE: Final = "/runs/delete"
RUNS_ARTIFACT: Final = "/runs/artifact"

# experiments: named groups of runs
EXPERIMENTS_CREATE: Final = "/experiments/create"
EXPERIMENTS_GET: Final = "/experiments/get"
EXPERIMENTS_LIST: Final = "/experiments/list"
EXPERIMENTS_DELETE: Final = "/experiments/delete"

# evaluation and search
EVALUATE: Final = "/evaluate"
SEARCH: Final = "/search"

ENDPOINTS: Final[tuple[str, ...]] = (
    DATASETS_BEGIN,
    DATASETS_UPLOAD,
    DATASETS_COMMIT,
    DATASETS_LIST,
    DATASETS_DELETE,
    CONFIG_CHECK,
    MODELS_DESCRIBE,
    FIT,
    RUNS_STATUS,
    RUNS_LOGS,
    RUNS_METRICS,
    RUNS_LIST,
    RUNS_CANCEL,
    RUNS_DELETE,
    RUNS_ARTIFACT,
    EXPERIMENTS_CREATE,
    EXPERIMENTS_GET,
    EXPERIMENTS_LIST,
    EXPERIMENTS_DELETE,
    EVALUATE,
    SEARCH,
)
