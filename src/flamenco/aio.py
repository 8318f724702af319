"""Small asyncio helpers shared by the long-running loops of the Manager and the Worker."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger("flamenco.aio")

# Whether the client of a request being answered has gone away, asked without waiting.
Gone = Callable[[], Awaitable[bool]]


async def wait_any(*events: asyncio.Event, timeout: float) -> None:
    """Return when any event is set or the timeout passes, whichever comes first."""
    if timeout <= 0:
        return
    waiters = [asyncio.ensure_future(event.wait()) for event in events]
    with contextlib.suppress(TimeoutError):
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    for waiter in waiters:
        waiter.cancel()


async def wait_quietly(task: asyncio.Task[Any]) -> None:
    """Await a task that is ending, whatever it ends with."""
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task


class TurnWriter:
    """Group commit: the writes run once on the next turn of the event loop for every change
    announced (`changed`) during this one, and `written()` returns once they are done.

    Requests handled in the same turn share one transaction per write; components that share
    one writer (the Manager's state and its outbox) are written in the same turn, so a request
    that changed both waits for one turn, not two. Outside a running loop (start-up, tools)
    the writes happen at once.
    """

    def __init__(self) -> None:
        self._writes: list[Callable[[], None]] = []
        self._waiters: list[asyncio.Future[None]] = []
        self._scheduled = False

    def add(self, write: Callable[[], None]) -> None:
        """One more write to run each turn; it does nothing when it has nothing to write."""
        self._writes.append(write)

    def changed(self) -> None:
        if self._scheduled:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._write_all()
            return
        self._scheduled = True
        loop.call_soon(self._write_and_answer)

    async def written(self) -> None:
        """Return once everything announced so far is written."""
        if not self._scheduled:
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        await waiter

    def _write_all(self) -> None:
        for write in self._writes:
            write()

    def _write_and_answer(self) -> None:
        self._scheduled = False
        waiters, self._waiters = self._waiters, []
        try:
            self._write_all()
        except Exception as exc:  # every waiter must hear of it, not just the log
            log.error("a group write failed: %s", exc)
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_exception(exc)
            return
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)
