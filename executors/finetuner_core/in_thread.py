"""Endpoints that never make another request wait: the body runs in a worker thread, the event loop stays free.

An executor runs its synchronous endpoints one at a time, so a status call would wait for another user's upload
check. A coroutine endpoint is not serialised: ``@in_thread`` turns a synchronous endpoint into one that awaits
its body in a thread (``asyncio.to_thread``), so requests run side by side. What the bodies share must be
thread-safe: the stores open one SQLite connection per call.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

Result = TypeVar("Result")


def in_thread(method: Callable[..., Result]) -> Callable[..., Awaitable[Result]]:
    """``method`` as a coroutine function that runs it in a worker thread (its annotations kept for jina)."""

    @functools.wraps(method)
    async def endpoint(*args: Any, **kwargs: Any) -> Result:
        return await asyncio.to_thread(method, *args, **kwargs)

    return endpoint
