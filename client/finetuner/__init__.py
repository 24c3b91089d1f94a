"""Finetuner's API for a self-hosted Flow: ``login``, ``fit``, runs, ``get_model`` and ``encode``."""

from finetuner.api import (
    FitConfig,
    Run,
    build_model,
    describe_models,
    encode,
    evaluate,
    fit,
    get_model,
    get_run,
    list_runs,
    login,
)
from finetuner.errors import ConnectionFailedError, FinetunerError, NotLoggedInError, ServerError

__all__ = [
    "ConnectionFailedError",
    "FinetunerError",
    "FitConfig",
    "NotLoggedInError",
    "Run",
    "ServerError",
    "build_model",
    "describe_models",
    "encode",
    "evaluate",
    "fit",
    "get_model",
    "get_run",
    "list_runs",
    "login",
]
