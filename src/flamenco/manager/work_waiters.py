"""The Workers whose long polls wait for a task on a Manager, and who gets woken for new work.

A waiting long poll holds a future and a timer, not an `asyncio.wait_for`: that made a Task
per long poll. New work wakes as many waiting Workers as there are new tasks, longest waiting
first, not all of them. Until the woken have looked, that many queued tasks are promised to
them: a request that arrives meanwhile does not take them (else, while tasks are scarce,
newcomers would win every time and some Workers would wait out their whole long poll).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque


class WorkWaiters:
    def __init__(self) -> None:
        self._waiters: deque[asyncio.Future[None]] = deque()  # longest waiting first
        self.promised = 0  # waiting Workers woken for new tasks that have not looked yet

    @property
    def waiting(self) -> int:
        """Long polls in line (some may have ended a moment ago, see `notify`)."""
        return len(self._waiters)

    async def wait(self, timeout: float) -> bool:
        """Wait until woken for new work (True) or until the timeout (False)."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        self._waiters.append(waiter)
        timer = loop.call_later(timeout, _time_up, waiter)
        try:
            with contextlib.suppress(TimeoutError):
                await waiter
        finally:
            timer.cancel()
            woken = waiter.done() and not waiter.cancelled() and waiter.exception() is None
            if woken:
                self.promised -= 1  # this one looks now (or is gone)
            else:  # unless `notify` passed it over already (see there)
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
        return woken

    def notify(self, count: int = 1) -> None:
        """Wake up to `count` waiting Workers, longest waiting first. A woken Worker that
        cannot take the task passes the turn on (ManagerService._wait_for_assignment)."""
        while count > 0 and self._waiters:
            waiter = self._waiters.popleft()
            if waiter.done():
                continue  # its wait ended a moment ago (ran out, or the request went away)
            waiter.set_result(None)
            self.promised += 1
            count -= 1


def _time_up(waiter: asyncio.Future[None]) -> None:
    """A long poll's wait for work ran out."""
    if not waiter.done():
        waiter.set_exception(TimeoutError())
