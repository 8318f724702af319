"""Wakes long-polling Manager syncs when the Server may have something new for them.

Services ring it from any thread (routes run in a thread pool) when tasks may have become
leasable (a job submitted, resumed or requeued, a task handed back or failed, a lease
expired) or when a Manager may have something to learn (a task taken away, a Worker's
wanted state, a blocklist). A waiting sync then looks again; no thread waits meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator


class Doorbell:
    """A ring counter that coroutines wait on.

    A waiter takes a ticket (the count) *before* it looks at the state, then waits for a
    ring after that ticket, so a ring between the look and the wait is not missed.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rings = 0
        self._listeners = 0  # long polls in progress, waiting or looking
        self._waiters: dict[asyncio.Future[None], asyncio.AbstractEventLoop] = {}

    def ticket(self) -> int:
        with self._lock:
            return self._rings

    @property
    def waiting(self) -> int:
        """How many coroutines wait for a ring right now."""
        return len(self._waiters)

    @property
    def listened(self) -> bool:
        """Whether a long poll is in progress: costly checks for a ring may be skipped if not."""
        return self._listeners > 0

    @contextlib.contextmanager
    def listening(self) -> Iterator[None]:
        with self._lock:
            self._listeners += 1
        try:
            yield
        finally:
            with self._lock:
                self._listeners -= 1

    def ring(self) -> None:
        """Safe from any thread."""
        with self._lock:
            self._rings += 1
            waiters, self._waiters = self._waiters, {}
        for future, loop in waiters.items():
            with contextlib.suppress(RuntimeError):  # a closed loop: the Server is stopping
                loop.call_soon_threadsafe(_wake, future)

    async def wait(self, ticket: int, timeout: float) -> bool:
        """Wait for a ring after `ticket`; False if `timeout` seconds passed first."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        with self._lock:
            if self._rings != ticket:
                return True
            self._waiters[future] = loop
        try:
            await asyncio.wait_for(future, max(0.0, timeout))
            return True
        except TimeoutError:
            return False
        finally:
            with self._lock:
                self._waiters.pop(future, None)


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
