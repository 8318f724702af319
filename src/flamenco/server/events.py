"""Live events for the Dashboard: what changed, so that pages can fetch it again.

Services publish from any thread; each subscriber (one server-sent-event stream) gets its own
queue in which identical pending events collapse into one, so a burst of progress updates
costs a page one refresh, not hundreds. A subscriber may follow one job only (`flamenco jobs
watch`): it then wakes for that job's events alone. Every stream begins with the comment
`: connected`, sent once the subscription is in place: whatever a client reads after it,
it cannot miss a later change.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

from flamenco.core.watching import GREETING

log = logging.getLogger("flamenco.server.events")

PING_S = 15.0
MAX_PENDING = 1000


class Subscriber:
    def __init__(self, job_id: str | None = None) -> None:
        self.job_id = job_id  # None: every event
        self.pending: dict[str, None] = {}  # ordered set of encoded events
        self.wake = asyncio.Event()

    def offer(self, encoded: str, job_id: str | None) -> None:
        if self.job_id is not None and job_id != self.job_id:
            return
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
        job_id = data.get("job_id", data.get("id") if kind == "job" else None)
        with contextlib.suppress(RuntimeError):  # a closed loop: the Server is stopping
            self.loop.call_soon_threadsafe(self._offer, encoded, job_id)

    def publish_task(self, job_id: str, task_id: str, logged: bool = False) -> None:
        """A task changed: its own event, its job's, and with `logged` its log's."""
        self.publish("task", job_id=job_id, id=task_id)
        self.publish("job", id=job_id)
        if logged:
            self.publish("log", job_id=job_id, task_id=task_id)

    def _offer(self, encoded: str, job_id: str | None) -> None:
        for subscriber in self.subscribers:
            subscriber.offer(encoded, job_id)

    async def stream(self, job_id: str | None = None) -> AsyncIterator[str]:
        """The events for one subscriber (of one job only, given `job_id`)."""
        subscriber = Subscriber(job_id)
        self.subscribers.add(subscriber)
        try:
            yield f": {GREETING}\n\n"  # subscribed: whatever a client reads now is fresh
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
