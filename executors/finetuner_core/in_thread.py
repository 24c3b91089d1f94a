"""Endpoints that never make another request wait, and whose errors tell a client the reason only.

An executor runs its synchronous endpoints one at a time, so a status call would wait for another user's upload
check. A coroutine endpoint is not serialised: ``@in_thread`` turns a synchronous endpoint into one that awaits
its body in a thread (``asyncio.to_thread``), so requests run side by side. What the bodies share must be
thread-safe: the stores open one SQLite connection per call.

An error leaves the endpoint as its kind and message only (:class:`Reason`): jina sends the traceback of the
exception it catches to the client, which would tell a client how the server is laid out. The traceback is
logged here, on the server, first.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

Result = TypeVar("Result")
log = logging.getLogger("finetuner")


class Reason(Exception):
    """An endpoint's error as the client receives it: no traceback (``__traceback__`` reads as None)."""

    __traceback__ = property(lambda self: None, lambda self, value: None)


@functools.cache
def _reason_class(kind: type[Exception]) -> type[Exception]:
    """``kind`` without its traceback: named as it is (clients read the name: AuthError, DataError ...) and still
    an instance of it for callers in this process."""
    try:
        return type(kind.__name__, (Reason, kind), {"__module__": kind.__module__})
    except TypeError:  # a built-in kind whose layout does not mix (OSError ...)
        return type(kind.__name__, (Reason,), {"__module__": kind.__module__})


def reason_only(error: Exception) -> Exception:
    """``error``'s kind, message and attributes, without a traceback."""
    kind = _reason_class(type(error))
    reason = kind.__new__(kind, *error.args)  # no __init__: the attributes are copied as they are
    reason.__dict__.update(getattr(error, "__dict__", {}))
    return reason


def in_thread(method: Callable[..., Result]) -> Callable[..., Awaitable[Result]]:
    """``method`` as a coroutine function that runs it in a worker thread (its annotations kept for jina); its
    errors are logged with their traceback and raised as :class:`Reason`."""

    @functools.wraps(method)
    async def endpoint(*args: Any, **kwargs: Any) -> Result:
        try:
            return await asyncio.to_thread(method, *args, **kwargs)
        except Exception as error:
            logger = getattr(args[0], "logger", None) if args else None
            (logger or log).error(f"{method.__qualname__} failed", exc_info=error)
            raise reason_only(error) from None

    return endpoint
