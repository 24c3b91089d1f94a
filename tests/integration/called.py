"""Executors loaded from their config.yml, their endpoints called as plain functions (as jina awaits them)."""

import asyncio
import functools
import inspect

from jina import Executor

from conftest import ROOT


class Called:
    """An executor whose coroutine endpoints are run to completion when called; anything else as it is."""

    def __init__(self, executor: Executor):
        self.executor = executor

    def __getattr__(self, name: str):
        value = getattr(self.executor, name)
        if inspect.iscoroutinefunction(value):
            return functools.wraps(value)(lambda *args, **kwargs: asyncio.run(value(*args, **kwargs)))
        return value


def load(name: str, **uses_with) -> Called:
    """``executors/<name>/config.yml`` with ``uses_with`` settings."""
    return Called(Executor.load_config(str(ROOT / "executors" / name / "config.yml"), uses_with=uses_with))
