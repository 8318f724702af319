"""The Manager's link to the Server: deliver the outbox, renew leases, take new ones.

Two loops share the link. The delivery loop sends the outbox (updates and frames) as soon as
something is queued. The sync loop calls `POST /manager/sync` every `interval_s` to renew
leases and report progress and Workers, at once when Workers wait for tasks, and then
long-polls: the Server holds the call until it has a task for this site (or something else
to tell it), so a new job starts without polling.

It keeps going while the Server is away: Workers go on with the tasks already held, and
everything they report waits in the outbox until the Server answers again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from flamenco import wire
from flamenco.aio import wait_any
from flamenco.client import ApiError, AsyncApi, TlsFailure, Unreachable, api_path
from flamenco.manager.metrics import ManagerMeters
from flamenco.manager.service import ManagerService
from flamenco.outbox import FrameItem, Outbox, update_batch

log = logging.getLogger("flamenco.manager.upstream")
T = TypeVar("T")

MAX_BACKOFF_S = 10.0
LONG_POLL_S = 15.0  # how long the Server may hold a sync while this site holds no task
REQUEST_MARGIN_S = 10.0  # a held sync's request times out this much after the hold
GATHER_S = 0.1  # deliveries are at least this far apart
# Syncs that refill the queue while no Worker waits are at least this far apart: the queue
# holds about LOOKAHEAD_S of tasks (service.py), so a refill can take what a quarter of a
# second of finished tasks made room for, in one Server request instead of several.
REFILL_GATHER_S = 0.25


class ServerLink:
    def __init__(
        self,
        service: ManagerService,
        server: AsyncApi,
        outbox: Outbox,
        interval_s: float,
        meters: ManagerMeters | None = None,
    ) -> None:
        self.service = service
        self.meters = meters or ManagerMeters()
        # Hashes of the farm's metrics tokens, from the last sync: what /metrics accepts.
        self.metrics_tokens: frozenset[str] = frozenset()
        self.server = server
        self.outbox = outbox
        self.interval_s = interval_s
        self.online = False
        self._warned_offline = False
        self._reconnected = asyncio.Event()  # wakes a loop in backoff when the other got through
        self._told_roster: list[tuple[str, str]] | None = None
        self._workers_told_at = float("-inf")

    async def run(self, stop: asyncio.Event) -> None:
        """Run the loops until `stop`; a sync held by the Server is abandoned, not awaited."""
        loops = [
            asyncio.create_task(loop(stop))
            for loop in (self._delivery_loop, self._sync_loop, self._reap_loop)
        ]
        try:
            await stop.wait()
        finally:
            for task in loops:
                task.cancel()
            await asyncio.gather(*loops, return_exceptions=True)

    # ---- the loops -------------------------------------------------------------------------

    async def _delivery_loop(self, stop: asyncio.Event) -> None:
        """Send the outbox whenever something is queued; back off while the Server is away.

        Updates that follow each other closely (a busy site finishes a task every few
        milliseconds) go up together: one delivery per GATHER_S at most.
        """
        wake = self.service.link_wake
        loop = asyncio.get_running_loop()
        delay = self.interval_s
        while not stop.is_set():
            wake.clear()
            started = loop.time()
            if await self._attempt(self.deliver) is not None:
                delay = self.interval_s
                await wait_any(stop, wake, timeout=self.interval_s)
                await wait_any(stop, timeout=GATHER_S - (loop.time() - started))
            else:
                delay = _backoff(delay, self.interval_s)
                await wait_any(stop, self._reconnected, timeout=delay)

    async def _sync_loop(self, stop: asyncio.Event) -> None:
        """Sync every `interval_s`, at once when Workers want tasks; long-poll while they do.

        While tasks are queued here, the syncs that refill the queue are REFILL_GATHER_S
        apart at least, so that one sync takes what many finished tasks made room for; a
        Worker that waits for a task ends that pause.
        """
        wake, waits = self.service.sync_wake, self.service.worker_waits
        loop = asyncio.get_running_loop()
        delay = self.interval_s
        while not stop.is_set():
            wake.clear()
            waits.clear()
            started = loop.time()
            leased = await self._attempt(self.sync_once)
            if leased is None:
                delay = _backoff(delay, self.interval_s)
                await wait_any(stop, self._reconnected, timeout=delay)
                continue
            delay = self.interval_s
            took = loop.time() - started
            if not (self.service.want() > 0 and (leased or took >= self.interval_s)):
                await wait_any(stop, wake, timeout=max(0.0, self.interval_s - took))
            if not self.service.workers_waiting():
                await wait_any(stop, waits, timeout=REFILL_GATHER_S - (loop.time() - started))

    async def _reap_loop(self, stop: asyncio.Event) -> None:
        """Silent Workers lose their tasks, whether or not a sync is being held."""
        while not stop.is_set():
            self.service.reap_silent_workers()
            await wait_any(stop, timeout=self.interval_s)

    async def _attempt(self, call: Callable[[], Awaitable[T]]) -> T | None:
        """One exchange with the Server (None if it failed); keeps `online` and the log."""
        try:
            result = await call()
        except (Unreachable, ApiError) as exc:
            self.online = False
            self._told_roster = None  # not heard: tell the Workers again next time
            self._reconnected.clear()
            if not self._warned_offline:
                if isinstance(exc, ApiError) and exc.status == 401:
                    # Revoked or replaced: the operator restarts it with a new token.
                    log.error("the Server refuses this Manager's token: %s", exc.message)
                elif isinstance(exc, TlsFailure):
                    # Not a passing outage: its certificate, or this Manager's --ca-bundle,
                    # must be put right. The Workers go on with the tasks held meanwhile.
                    log.error("the Server is not trusted, working offline: %s", exc)
                else:
                    log.warning("the Server is unreachable, working offline: %s", exc)
                self._warned_offline = True
            return None
        if not self.online:
            log.info("connected to the Server at %s", self.server.http.base_url)
            self.online, self._warned_offline = True, False
            self._reconnected.set()  # the other loop may stop backing off
        return result

    # ---- the exchanges ---------------------------------------------------------------------

    async def deliver(self) -> int:
        """Send what is queued in the outbox, in order; return how many items went out. What
        comes in meanwhile waits for the next delivery, GATHER_S later at the earliest."""
        return await self.outbox.flush(self._send_updates, self._send_frame, queued_now=True)

    async def sync_once(self) -> list[wire.Lease]:
        """One sync, which the Server may hold while this site wants tasks; the new leases.

        While it is held, a change among the Workers (one joins, sleeps, goes offline) goes
        up at once in an ordinary sync besides it, so the farm's pages do not wait for it.
        """
        told = self._sync_request()
        held = asyncio.ensure_future(self._exchange(told))
        try:
            while not (await asyncio.wait({held}, timeout=self.interval_s))[0]:
                if self.service.roster() != self._told_roster:
                    told = self._sync_request(want=0)
                    await self._exchange(told)
        finally:
            held.cancel()  # when stopping, or when the other sync failed
        return held.result()

    async def _exchange(self, request: wire.ManagerSync) -> list[wire.Lease]:
        timeout = request.wait_s + REQUEST_MARGIN_S if request.wait_s else None
        started = time.perf_counter()
        reply = await self.server.call(
            "POST", "/api/v1/manager/sync", wire.ManagerSyncReply, request, timeout=timeout
        )
        self.meters.server_synced(request.wait_s, time.perf_counter() - started)
        self.metrics_tokens = frozenset(reply.metrics_tokens)
        self.service.handed_back(request.handed_back)
        self.service.revoke(reply.revoked)
        self.service.take_blocklist(reply.blocklist)
        self.service.take_worker_states(reply.worker_states)
        self.service.take_leases(reply.leases)
        self.interval_s = reply.next_sync_s
        return reply.leases

    def _sync_request(self, want: int | None = None) -> wire.ManagerSync:
        want = self.service.want() if want is None else want
        # Tasks no Worker here may run go back to the Server at once, for another site; they
        # are no longer renewed, and forgotten once the Server has them (_exchange).
        handed_back = self.service.unrunnable()
        giving = set(handed_back)
        held = [task_id for task_id in self.service.held_ids() if task_id not in giving]
        roster, now = self.service.roster(), time.monotonic()
        # Load and progress of the Workers and their tasks go up once an interval, not with
        # every sync (a busy site syncs several times a second); a change of the roster at once.
        report = roster != self._told_roster or now - self._workers_told_at >= self.interval_s
        if report:
            self._told_roster, self._workers_told_at = roster, now
        # While the site holds tasks it reports their progress every interval; holding none,
        # it has nothing to report, and the Server may hold the call longer.
        wait_s = (self.interval_s if held else LONG_POLL_S) if want > 0 else 0.0
        return wire.ManagerSync(
            want=want,
            held=held,
            progress=self.service.progress() if report else [],
            workers=self.service.workers() if report else None,
            wait_s=wait_s,
            handed_back=handed_back,
        )

    async def _send_updates(self, updates: list[str]) -> None:
        """The queued updates (their JSON, `worker` set when queued: service.py)."""
        await self.server.call(
            "POST", "/api/v1/manager/updates", wire.UpdatesApplied, update_batch(updates)
        )

    async def _send_frame(self, item: FrameItem) -> None:
        source, started = self.service.blobs.path(item.sha256), time.perf_counter()
        if item.kind == "artifact":
            await self.server.upload_file(
                api_path("manager", "tasks", item.task_id, "artifacts", item.filename),
                source,
                item.sha256,
            )
        else:
            await self.server.upload_file(
                f"/api/v1/manager/tasks/{item.task_id}/frames/{item.frame}",
                source,
                item.sha256,
                params={"filename": item.filename},
            )
        self.meters.uploaded(item.kind, source.stat().st_size, time.perf_counter() - started)


def _backoff(delay: float, base: float) -> float:
    """The next wait while the Server is away: doubling from `base`, at most MAX_BACKOFF_S."""
    return min(max(delay, base) * 2, MAX_BACKOFF_S)
