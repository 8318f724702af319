"""The Manager's link to the Server (ServerLink) against a scripted Server (httpx mock).

A stand-in for the ManagerService gives the link what it asks for; the real outbox queues
what goes up. No fixed sleeps: each test waits for what it expects, with a bound.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, cast

import httpx
import pytest

from flamenco import wire
from flamenco.client import AsyncApi
from flamenco.manager.service import ManagerService
from flamenco.manager.upstream import GATHER_S, LONG_POLL_S, REFILL_GATHER_S, ServerLink
from flamenco.outbox import Outbox

BOUND_S = 5.0

Handler = Callable[[httpx.Request], Awaitable[httpx.Response]]


class FakeService:
    """What ServerLink uses of the ManagerService."""

    def __init__(self) -> None:
        self.link_wake = asyncio.Event()
        self.sync_wake = asyncio.Event()
        self.worker_waits = asyncio.Event()
        self.wanted = 0
        self.waiting: bool | None = None  # None: Workers wait whenever the site wants tasks
        self.held: list[str] = []
        self.leases: list[wire.Lease] = []
        self.summaries: list[wire.WorkerSummary] = []

    def want(self) -> int:
        return self.wanted

    def workers_waiting(self) -> bool:
        return self.wanted > 0 if self.waiting is None else self.waiting

    def held_ids(self) -> list[str]:
        return list(self.held)

    def progress(self) -> list[wire.Progress]:
        return []

    def workers(self) -> list[wire.WorkerSummary]:
        return list(self.summaries)

    def roster(self) -> list[tuple[str, str]]:
        return sorted((w.name, w.status) for w in self.summaries)

    def revoke(self, task_ids: list[str]) -> None:
        pass

    def unrunnable(self) -> list[str]:
        return []

    def handed_back(self, task_ids: list[str]) -> None:
        pass

    def take_blocklist(self, blocklist: dict[str, list[str]]) -> None:
        pass

    def take_worker_states(self, states: dict[str, str]) -> None:
        pass

    def take_leases(self, leases: list[wire.Lease]) -> None:
        self.leases += leases

    def reap_silent_workers(self) -> None:
        pass


class FakeServer:
    """Records each request; while `holding`, holds the syncs that may be held."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self.hold = asyncio.Event()  # a held sync waits for this
        self.holding = False
        self.down = False
        self.next_sync_s = 60.0
        self.updates_open = asyncio.Event()  # deliveries are answered while this is set
        self.updates_open.set()
        self.delivered_at: list[float] = []
        self.synced_at: list[float] = []
        self.leasing = False  # every sync leases one task
        self.refused_activity = ""  # a batch with an update of this activity is a 422

    async def handle(self, request: httpx.Request) -> httpx.Response:
        if self.down:
            raise httpx.ConnectError("refused", request=request)
        body = json.loads(request.content or b"{}")
        self.requests.append((request.url.path, body))
        if request.url.path.endswith("/manager/updates"):
            self.delivered_at.append(asyncio.get_running_loop().time())
            await self.updates_open.wait()
            if any(u.get("activity") == self.refused_activity for u in body["updates"]):
                return httpx.Response(422, json={"detail": "The update is not valid."})
            return httpx.Response(200, json={"applied": [u["update_id"] for u in body["updates"]]})
        self.synced_at.append(asyncio.get_running_loop().time())
        if self.holding and body.get("wait_s"):
            await self.hold.wait()
        leases = [lease(f"t{len(self.synced_at)}")] if self.leasing else []
        reply = {"leases": leases, "revoked": [], "next_sync_s": self.next_sync_s}
        return httpx.Response(200, json=reply)

    def syncs(self) -> list[dict[str, Any]]:
        return [body for path, body in self.requests if path.endswith("/manager/sync")]

    def deliveries(self) -> int:
        return sum(path.endswith("/manager/updates") for path, _ in self.requests)

    def delivered(self) -> list[int]:
        """How many updates each delivery carried."""
        return [len(body["updates"]) for path, body in self.requests if path.endswith("/updates")]

    def taken(self) -> list[dict[str, Any]]:
        """The updates of the deliveries it took, in order."""
        return [
            u
            for path, body in self.requests
            if path.endswith("/updates")
            and not any(u.get("activity") == self.refused_activity for u in body["updates"])
            for u in body["updates"]
        ]


def make_link(tmp_path: Path, server: FakeServer, service: FakeService) -> ServerLink:
    api = AsyncApi("http://server.test")
    api.http = httpx.AsyncClient(
        base_url="http://server.test", transport=httpx.MockTransport(server.handle)
    )
    outbox = Outbox(tmp_path / "outbox.sqlite")
    return ServerLink(cast(ManagerService, service), api, outbox, interval_s=60.0)


async def until(check: Callable[[], object], timeout: float = BOUND_S) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        assert loop.time() < deadline, "timed out"
        await asyncio.sleep(0.01)


def lease(task_id: str) -> dict[str, Any]:
    return {
        "task_id": task_id,
        "job_id": "j1",
        "job_name": "job",
        "job_priority": 50,
        "type": "blender-render",
        "name": task_id,
        "frames": [1],
        "command": {},
        "files": {},
        "lease_expires": "2030-01-01T00:00:00Z",
    }


def update() -> wire.TaskUpdate:
    return wire.TaskUpdate(update_id=uuid.uuid4().hex, task_id="t1", status="active")


def run_link(
    tmp_path: Path, scenario: Callable[[ServerLink, FakeServer, FakeService], Awaitable[None]]
) -> None:
    async def main() -> None:
        server, service = FakeServer(), FakeService()
        link = make_link(tmp_path, server, service)
        stop = asyncio.Event()
        running = asyncio.create_task(link.run(stop))
        try:
            await scenario(link, server, service)
        finally:
            stop.set()
            await asyncio.wait_for(running, BOUND_S)
            server.hold.set()

    asyncio.run(main())


def test_updates_go_up_as_soon_as_queued_without_a_sync_each(tmp_path: Path) -> None:
    async def scenario(link: ServerLink, server: FakeServer, service: FakeService) -> None:
        await until(lambda: server.syncs() and link.online)
        for n in range(3):
            link.outbox.add_update(update())
            service.link_wake.set()
            await until(lambda n=n: server.deliveries() == n + 1)
        assert len(server.syncs()) == 1  # the next one is due in next_sync_s = 60 s

    run_link(tmp_path, scenario)


def test_updates_that_come_during_a_delivery_go_up_together_a_moment_later(
    tmp_path: Path,
) -> None:
    async def scenario(link: ServerLink, server: FakeServer, service: FakeService) -> None:
        await until(lambda: server.syncs() and link.online)
        server.updates_open.clear()  # the first delivery hangs until the others are queued
        link.outbox.add_update(update())
        service.link_wake.set()
        await until(lambda: server.deliveries() == 1)
        for _ in range(5):
            link.outbox.add_update(update())
            service.link_wake.set()
        server.updates_open.set()
        await until(lambda: sum(server.delivered()) == 6)
        assert server.delivered() == [1, 5]
        first, second = server.delivered_at
        assert second - first >= GATHER_S

    run_link(tmp_path, scenario)


def test_a_site_that_wants_tasks_long_polls_and_asks_at_once_when_workers_wait(
    tmp_path: Path,
) -> None:
    async def scenario(link: ServerLink, server: FakeServer, service: FakeService) -> None:
        await until(lambda: server.syncs())
        assert server.syncs()[0]["wait_s"] == 0  # wants nothing: an ordinary sync
        server.holding = True
        service.wanted = 1
        service.sync_wake.set()
        await until(lambda: len(server.syncs()) == 2)
        assert server.syncs()[1]["wait_s"] == LONG_POLL_S
        # While it holds tasks, the site reports their progress every interval.
        service.held = ["t1"]
        server.hold.set()
        service.sync_wake.set()
        await until(lambda: len(server.syncs()) >= 3)
        assert server.syncs()[2]["wait_s"] == link.interval_s

    run_link(tmp_path, scenario)


def test_a_change_among_the_workers_goes_up_while_a_sync_is_held(tmp_path: Path) -> None:
    async def scenario(link: ServerLink, server: FakeServer, service: FakeService) -> None:
        service.summaries = [wire.WorkerSummary(name="w1", status="awake")]
        server.next_sync_s = 0.05  # the link looks at its Workers every interval
        await until(lambda: server.syncs())
        server.holding = True
        service.wanted = 1
        service.sync_wake.set()
        await until(lambda: any(body["wait_s"] for body in server.syncs()))
        service.summaries = [wire.WorkerSummary(name="w1", status="asleep")]

        def reported() -> bool:
            return any(
                body["want"] == 0 and body["workers"][0]["status"] == "asleep"
                for body in server.syncs()
            )

        await until(reported)

    run_link(tmp_path, scenario)


def test_stopping_the_link_does_not_wait_for_a_held_sync(tmp_path: Path) -> None:
    async def scenario(link: ServerLink, server: FakeServer, service: FakeService) -> None:
        server.holding = True  # the Server never answers: the finally clause stops the link
        service.wanted = 1
        await until(lambda: server.syncs())

    run_link(tmp_path, scenario)


def test_the_outbox_waits_while_the_server_is_away_and_goes_up_when_it_is_back(
    tmp_path: Path,
) -> None:
    async def scenario(link: ServerLink, server: FakeServer, service: FakeService) -> None:
        await until(lambda: link.online)
        server.down = True
        link.outbox.add_update(update())
        service.link_wake.set()
        await until(lambda: not link.online)
        assert len(link.outbox) == 1
        server.down = False
        service.sync_wake.set()  # the sync loop gets through first and wakes the delivery
        await until(lambda: server.deliveries() == 1 and len(link.outbox) == 0)
        assert link.online

    run_link(tmp_path, scenario)


@pytest.mark.parametrize("interval", [1.0, 0.5])
def test_backoff_doubles_up_to_its_limit(interval: float) -> None:
    from flamenco.manager.upstream import MAX_BACKOFF_S, _backoff

    delays = [interval]
    for _ in range(8):
        delays.append(_backoff(delays[-1], interval))
    assert delays[1] == 2 * interval and delays[-1] == MAX_BACKOFF_S


def test_an_update_the_server_refuses_for_good_is_set_aside_and_the_rest_go_up(
    tmp_path: Path,
) -> None:
    """A 422 will not heal: the refused update is found, set aside and its task reported as
    failed in the same delivery; the updates around it reach the Server, and the link stays
    online."""

    async def scenario(link: ServerLink, server: FakeServer, service: FakeService) -> None:
        await until(lambda: server.syncs() and link.online)
        server.refused_activity = "poison"
        before, after = update(), update()
        poison = wire.TaskUpdate(
            update_id=uuid.uuid4().hex, task_id="t2", status="completed", activity="poison"
        )
        link.outbox.add_updates([before, poison, after])
        service.link_wake.set()
        await until(lambda: len(link.outbox) == 0)
        taken = server.taken()
        assert [u["update_id"] for u in taken[:2]] == [before.update_id, after.update_id]
        assert [(u["task_id"], u["status"]) for u in taken[2:]] == [("t2", "failed")]
        assert taken[2]["error"] == "An update of task t2 was refused: The update is not valid."
        assert [a.task_id for a in link.outbox.set_aside()] == ["t2"]
        assert link.online

    run_link(tmp_path, scenario)


def test_refill_syncs_are_gathered_while_no_worker_waits_and_a_waiting_worker_ends_the_pause(
    tmp_path: Path,
) -> None:
    """A busy site that has tasks queued refills at most every REFILL_GATHER_S, so that one
    sync takes what many finished tasks made room for; a Worker that waits ends the pause."""

    async def scenario(link: ServerLink, server: FakeServer, service: FakeService) -> None:
        service.wanted, service.waiting, server.leasing = 5, False, True
        service.sync_wake.set()
        await until(lambda: len(server.syncs()) >= 4)
        gaps = [b - a for a, b in zip(server.synced_at[1:], server.synced_at[2:], strict=False)]
        assert min(gaps) >= REFILL_GATHER_S * 0.9  # (arrivals: a few ms of jitter)
        seen = len(server.syncs())
        await until(lambda: len(server.syncs()) > seen)  # a refill has just gone out
        service.waiting = True
        service.worker_waits.set()
        await until(lambda: len(server.syncs()) > seen + 1)
        assert server.synced_at[seen + 1] - server.synced_at[seen] < REFILL_GATHER_S

    run_link(tmp_path, scenario)
