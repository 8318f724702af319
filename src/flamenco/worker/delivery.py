"""The Worker's delivery of its outbox (frames, artifacts, task updates) to its Manager, in
order, retried with back-off while the Manager is away."""

from __future__ import annotations

import asyncio
import logging

from flamenco import wire
from flamenco.aio import wait_any
from flamenco.blob_cache import BoundedBlobStore
from flamenco.client import ApiError, AsyncApi, Unreachable, api_path
from flamenco.outbox import FrameItem, Outbox, update_batch

log = logging.getLogger("flamenco.worker")

MAX_BACKOFF_S = 10.0


class Delivery:
    def __init__(self, api: AsyncApi, outbox: Outbox, blobs: BoundedBlobStore) -> None:
        self.api = api
        self.outbox = outbox
        self.blobs = blobs
        self.wake = asyncio.Event()  # something was queued: deliver now
        self.lock = asyncio.Lock()  # one flush at a time, the sync's included

    async def loop(self, stop: asyncio.Event) -> None:
        delay = 1.0
        while not stop.is_set():
            self.wake.clear()
            try:
                await self.deliver()
                delay = 1.0
            except (Unreachable, ApiError) as exc:
                log.warning("delivery to the Manager failed, will retry: %s", exc)
                delay = min(delay * 2, MAX_BACKOFF_S)
            await wait_any(stop, self.wake, timeout=delay)

    async def deliver(self, keep_updates: bool = False) -> None:
        """Send what the outbox holds; with `keep_updates`, the frames only (a sync carries
        the updates)."""
        async with self.lock:
            await self.outbox.flush(self.send_updates, self.send_file, keep_updates=keep_updates)

    async def send_updates(self, updates: list[str]) -> None:
        """The queued updates, as the JSON texts they were queued as."""
        await self.api.call(
            "POST", "/api/v1/worker/updates", wire.UpdatesApplied, update_batch(updates)
        )

    async def send_file(self, item: FrameItem) -> None:
        if item.kind == "artifact":
            await self.api.upload_file(
                api_path("worker", "tasks", item.task_id, "artifacts", item.filename),
                self.blobs.path(item.sha256),
                item.sha256,
            )
            return
        await self.api.upload_file(
            f"/api/v1/worker/tasks/{item.task_id}/frames/{item.frame}",
            self.blobs.path(item.sha256),
            item.sha256,
            params={"filename": item.filename},
        )
