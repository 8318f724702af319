"""Live events for the Dashboard: what changed, so that pages can fetch it again.

Services publish from any thread; each subscriber (one server-sent-event stream) gets its own
queue in which identical pending events collapse into one, so a burst of progress updates
costs a page one refresh, not hundreds.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

log = logging.getLogger("flamenco.server.events")

PING_S = 15.0
MAX_PENDING = 1000


class Subscriber:
    def __init__(self) -> None:
        self.pending: dict[str, None] = {}  # ordered set of encoded events
        self.wake = asyncio.Event()

    def offer(self, encoded: str) -> None:
        if len(self.pending) < MAX_PENDING:
            self.pending[encoded] = None
        self.wake.set()

    def take(self) -> list[str]:
        events, self.pending = list(self.pending), {}
        self.wake.clear()
        return events


class EventBus:
    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self.subscribers: set[Subscriber] = set()

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop

    def publish(self, kind: str, **data: Any) -> None:
        """Safe from any thread; does nothing before the app runs or without listeners."""
        if self.loop is None or not self.subscribers:
            return
        encoded = f"event: {kind}\ndata: {json.dumps(data, sort_keys=True)}\n\n"
        with contextlib.suppress(RuntimeError):  # a closed loop: the Server is stopping
            self.loop.call_soon_threadsafe(self._offer, encoded)

    def _offer(self, encoded: str) -> None:
        for subscriber in self.subscribers:
            subscriber.offer(encoded)

    async def stream(self) -> AsyncIterator[str]:
        subscriber = Subscriber()
        self.subscribers.add(subscriber)
        try:
            yield ": connected\n\n"
            while True:
                try:
                    await asyncio.wait_for(subscriber.wake.wait(), PING_S)
                except TimeoutError:
                    yield ": ping\n\n"
                    continue
                for encoded in subscriber.take():
                    yield encoded
        finally:
            self.subscribers.discard(subscriber)
