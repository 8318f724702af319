"""The Manager's link to the Server: deliver the outbox, renew leases, take new ones.

It keeps going while the Server is away: Workers go on with the tasks already held, and
everything they report waits in the outbox until the Server answers again.
"""

from __future__ import annotations

import asyncio
import logging

from flamenco import wire
from flamenco.aio import wait_any
from flamenco.client import ApiError, AsyncApi, Unreachable, api_path
from flamenco.manager.service import ManagerService
from flamenco.outbox import FrameItem, Outbox

log = logging.getLogger("flamenco.manager.upstream")

MAX_BACKOFF_S = 10.0
HUNGRY_INTERVAL_S = 0.25


class ServerLink:
    def __init__(
        self, service: ManagerService, server: AsyncApi, outbox: Outbox, interval_s: float
    ) -> None:
        self.service = service
        self.server = server
        self.outbox = outbox
        self.interval_s = interval_s
        self.online = False

    async def run(self, stop: asyncio.Event) -> None:
        delay = self.interval_s
        while not stop.is_set():
            self.service.link_wake.clear()
            self.service.sync_wake.clear()
            try:
                await self.sync_once()
                if not self.online:
                    log.info("connected to the Server at %s", self.server.http.base_url)
                self.online, delay = True, self._next_delay()
            except (Unreachable, ApiError) as exc:
                if self.online or delay == self.interval_s:
                    log.warning("the Server is unreachable, working offline: %s", exc)
                self.online, delay = False, min(delay * 2, MAX_BACKOFF_S)
            self.service.reap_silent_workers()
            await wait_any(stop, self.service.link_wake, self.service.sync_wake, timeout=delay)

    def _next_delay(self) -> float:
        """Poll faster while Workers wait with nothing to give them: a new job starts sooner."""
        if self.service.workers_waiting() and self.service.want() > 0:
            return min(self.interval_s, HUNGRY_INTERVAL_S)
        return self.interval_s

    async def sync_once(self) -> None:
        await self.outbox.flush(self._send_updates, self._send_frame)
        request = wire.ManagerSync(
            want=self.service.want(),
            held=self.service.held_ids(),
            progress=self.service.progress(),
            workers=self.service.workers(),
        )
        reply = await self.server.call(
            "POST", "/api/v1/manager/sync", wire.ManagerSyncReply, request
        )
        self.service.revoke(reply.revoked)
        self.service.take_blocklist(reply.blocklist)
        self.service.take_worker_states(reply.worker_states)
        self.service.take_leases(reply.leases)
        self.interval_s = reply.next_sync_s

    async def _send_updates(self, updates: list[wire.TaskUpdate]) -> None:
        await self.server.call(
            "POST",
            "/api/v1/manager/updates",
            wire.UpdatesApplied,
            wire.UpdateBatch(updates=updates),
        )

    async def _send_frame(self, item: FrameItem) -> None:
        if item.kind == "artifact":
            await self.server.upload_file(
                api_path("manager", "tasks", item.task_id, "artifacts", item.filename),
                self.service.blobs.path(item.sha256),
                item.sha256,
            )
            return
        await self.server.upload_file(
            f"/api/v1/manager/tasks/{item.task_id}/frames/{item.frame}",
            self.service.blobs.path(item.sha256),
            item.sha256,
            params={"filename": item.filename},
        )
