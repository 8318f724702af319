"""Small asyncio helpers shared by the long-running loops of the Manager and the Worker."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any


async def wait_any(*events: asyncio.Event, timeout: float) -> None:
    """Return when any event is set or the timeout passes, whichever comes first."""
    waiters = [asyncio.ensure_future(event.wait()) for event in events]
    with contextlib.suppress(TimeoutError):
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    for waiter in waiters:
        waiter.cancel()


async def wait_quietly(task: asyncio.Task[Any]) -> None:
    """Await a task that is ending, whatever it ends with."""
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task
