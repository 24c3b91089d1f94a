"""Finetuner's API for a self-hosted Flow: ``login``, ``fit``, runs, ``get_model`` and ``encode``.

The API is loaded when a name of it is first used (``finetuner.fit``, ``from finetuner import login``), so that
``import finetuner`` and the ``finetuner`` command start at once. The client needs no model code: ``get_model``,
``build_model`` and ``encode`` run models here with the ``inference`` extra (``pip install "finetuner[inference]"``).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from finetuner.errors import ConnectionFailedError, FinetunerError, NotLoggedInError, ServerError

if TYPE_CHECKING:
    from finetuner.api import (
        build_model,
        check_data,
        create_experiment,
        delete_dataset,
        delete_experiment,
        delete_run,
        delete_runs,
        describe_models,
        encode,
        evaluate,
        fit,
        get_experiment,
        get_model,
        get_run,
        list_datasets,
        list_experiments,
        list_runs,
        login,
        upload_dataset,
    )
    from finetuner.run import Run
    from finetuner_protocol.data.errors import DataError
    from finetuner_protocol.settings import FitSettings as FitConfig

__all__ = [
    "ConnectionFailedError",
    "DataError",
    "FinetunerError",
    "FitConfig",
    "NotLoggedInError",
    "Run",
    "ServerError",
    "build_model",
    "check_data",
    "create_experiment",
    "delete_dataset",
    "delete_experiment",
    "delete_run",
    "delete_runs",
    "describe_models",
    "encode",
    "evaluate",
    "fit",
    "get_experiment",
    "get_model",
    "get_run",
    "list_datasets",
    "list_experiments",
    "list_runs",
    "login",
    "upload_dataset",
]
# name -> (module, attribute): where each name loaded on first use lives (the functions: finetuner.api)
_LAZY: dict[str, tuple[str, str]] = {
    **{name: ("finetuner.api", name) for name in __all__ if name[0].islower()},
    "Run": ("finetuner.run", "Run"),
    "DataError": ("finetuner_protocol.data.errors", "DataError"),
    "FitConfig": ("finetuner_protocol.settings", "FitSettings"),  # every setting of a fit, with its help
}
_SUBMODULES = (
    "api",
    "cli",
    "data",
    "datasets",
    "environment",
    "evaluation",
    "progress",
    "report",
    "run",
    "settings",
    "transport",
)


def __getattr__(name: str) -> Any:
    """A name of the API, or a submodule, imported on first use."""
    if name in _SUBMODULES:
        return importlib.import_module(f"finetuner.{name}")
    if name not in _LAZY:
        raise AttributeError(f"module 'finetuner' has no attribute {name!r}")
    module, attribute = _LAZY[name]
    value = getattr(importlib.import_module(module), attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__, *_SUBMODULES})
