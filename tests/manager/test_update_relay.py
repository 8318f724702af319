"""The Manager relays its Workers' updates to the Server as the JSON it queued them as: the body
of POST /manager/updates is exactly what wire.UpdateBatch of those updates dumps, each update
naming the Worker that sent it (whatever that Worker claimed)."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import cast

import httpx

from flamenco import wire
from flamenco.client import AsyncApi
from flamenco.manager.service import ManagerService
from flamenco.manager.upstream import ServerLink
from flamenco.outbox import Outbox


def test_updates_go_up_as_queued_in_one_batch_body(tmp_path: Path) -> None:
    bodies: list[tuple[str, bytes]] = []

    async def server(request: httpx.Request) -> httpx.Response:
        bodies.append((request.headers["content-type"], request.content))
        return httpx.Response(200, json={"applied": []})

    updates = [
        wire.TaskUpdate(
            update_id=uuid.uuid4().hex,
            task_id=f"t{n}",
            status="completed" if n else "active",
            progress=0.5,
            activity="rendering ✓",
            log=["line one", 'a "quoted" line'],
            worker="claimed-name",
        )
        for n in range(3)
    ]
    for u in updates:
        u.worker = "w1"  # as ManagerService.apply_worker_updates sets it

    async def scenario() -> int:
        api = AsyncApi("http://server.test")
        api.http = httpx.AsyncClient(
            base_url="http://server.test", transport=httpx.MockTransport(server)
        )
        outbox = Outbox(tmp_path / "outbox.sqlite")
        outbox.add_updates(updates)
        # Delivering asks nothing of the service (sync_once does).
        link = ServerLink(cast(ManagerService, None), api, outbox, interval_s=60.0)
        sent = await link.deliver()
        await api.close()
        assert len(outbox) == 0
        return sent

    assert asyncio.run(scenario()) == 3
    expected = wire.UpdateBatch(updates=updates).model_dump_json().encode()
    assert bodies == [("application/json", expected)]
    relayed = wire.UpdateBatch.model_validate_json(bodies[0][1]).updates
    assert [u.worker for u in relayed] == ["w1"] * 3
