"""Held (long-polled) Manager syncs: answered as soon as there is something for the Manager.

Services called directly, on SQLite and PostgreSQL. A sync that wants tasks the Server does
not have is held up to its wait_s; these tests hold it for up to 30 s and expect the answer
within ANSWER_S of the change that makes it worth answering.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from serverkit import (
    BLEND,
    ONE_CPU_WORKER,
    add_job,
    add_manager,
    alice,
    lease_sync,
    make_services,
    task_update,
)

from flamenco import wire
from flamenco.core.states import TaskStatus
from flamenco.server.events import Subscriber
from flamenco.server.models import ManagerRow
from flamenco.server.services import ServerServices

WAIT_S = 30.0  # held syncs ask for this; the Server holds at most 15 s (manager_offline_s / 2)
ANSWER_S = 5.0  # a generous bound on "as soon as"


@pytest.fixture(params=["sqlite", "postgres"])
def svc(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ServerServices]:
    yield from make_services(request, tmp_path)


def held_sync(
    svc: ServerServices,
    manager: ManagerRow,
    want: int = 1,
    held: list[str] | None = None,
    wait_s: float = WAIT_S,
) -> asyncio.Task[wire.ManagerSyncReply]:
    """A sync that may be held, after an ordinary one: the Server told the Manager all it had
    (the first sync after the Server started is answered at once)."""
    lease_sync(svc, manager, held=held)
    request = wire.ManagerSync(want=want, held=held or [], workers=ONE_CPU_WORKER, wait_s=wait_s)
    return asyncio.create_task(svc.leases.sync_waiting(manager, request))


async def until(check: Callable[[], object], timeout: float = ANSWER_S) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        assert loop.time() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def held(svc: ServerServices, sync: asyncio.Task[wire.ManagerSyncReply]) -> None:
    """Return once the sync waits for a ring (it must not have answered)."""
    await until(lambda: svc.leases.bell.waiting or sync.done())
    assert not sync.done(), f"answered at once: {sync.result()}"


async def answer(sync: asyncio.Task[wire.ManagerSyncReply]) -> wire.ManagerSyncReply:
    return await asyncio.wait_for(sync, ANSWER_S)


def test_a_held_sync_answers_as_soon_as_a_job_is_submitted(svc: ServerServices) -> None:
    manager = add_manager(svc, "site")

    async def scenario() -> None:
        sync = held_sync(svc, manager)
        await held(svc, sync)
        job = add_job(svc, "1-3")
        reply = await answer(sync)
        assert [(lease.job_id, lease.frames) for lease in reply.leases] == [(job.id, [1])]

    asyncio.run(scenario())


def test_a_held_sync_answers_as_soon_as_a_task_it_holds_is_canceled(svc: ServerServices) -> None:
    manager = add_manager(svc, "site")
    job = add_job(svc, "1")
    (lease,) = lease_sync(svc, manager, want=1).leases

    async def scenario() -> None:
        sync = held_sync(svc, manager, want=2, held=[lease.task_id])  # prefetch, none left
        await held(svc, sync)
        svc.jobs.act(job.id, "cancel", alice(svc))
        assert (await answer(sync)).revoked == [lease.task_id]

    asyncio.run(scenario())


def test_a_held_sync_answers_when_the_lease_of_a_silent_manager_expires(
    svc: ServerServices,
) -> None:
    silent, waiting = add_manager(svc, "silent"), add_manager(svc, "waiting")
    add_job(svc, "1")
    svc.leases.lease_timeout = timedelta(seconds=1)
    (lost,) = lease_sync(svc, silent, want=1).leases
    svc.leases.lease_timeout = timedelta(minutes=2)

    async def scenario() -> None:
        sync = held_sync(svc, waiting)
        reply = await answer(sync)  # no sync of anybody else expires the lease
        assert [lease.task_id for lease in reply.leases] == [lost.task_id]

    asyncio.run(scenario())


def test_a_held_sync_gets_the_tasks_of_a_manager_whose_token_is_revoked_at_once(
    svc: ServerServices,
) -> None:
    """Revoking a Manager's token queues its tasks again there and then: another site's
    waiting sync leases them without waiting out the lease timeout (two minutes here)."""
    revoked, waiting = add_manager(svc, "revoked"), add_manager(svc, "waiting")
    job = add_job(svc, "1-2")
    taken = lease_sync(svc, revoked, want=2).leases
    assert {task.manager for task in svc.jobs.tasks(job.id)} == {"revoked"}

    async def scenario() -> None:
        sync = held_sync(svc, waiting, want=2)
        await held(svc, sync)
        svc.auth.revoke_manager("revoked")
        reply = await answer(sync)
        assert sorted(lease.task_id for lease in reply.leases) == sorted(t.task_id for t in taken)

    asyncio.run(scenario())
    assert {task.manager for task in svc.jobs.tasks(job.id)} == {"waiting"}


def test_the_tasks_of_a_revoked_manager_are_queued_and_announced_with_no_site_waiting(
    svc: ServerServices,
) -> None:
    """The Dashboard hears that they are queued again, though no sync leased them since."""
    manager = add_manager(svc, "revoked")
    job = add_job(svc, "1-2")
    taken = {lease.task_id for lease in lease_sync(svc, manager, want=2).leases}

    async def scenario() -> set[str]:
        svc.events.bind(asyncio.get_running_loop())
        dashboard = Subscriber(job.id)  # what the job's page hears
        svc.events.subscribers.add(dashboard)
        svc.auth.revoke_manager("revoked")
        await until(lambda: dashboard.pending)
        return {
            json.loads(event.split("data: ")[1])["id"]
            for event in dashboard.take()
            if event.startswith("event: task")
        }

    assert asyncio.run(scenario()) == taken
    assert {(task.status, task.manager) for task in svc.jobs.tasks(job.id)} == {
        (TaskStatus.QUEUED, None)
    }


def test_the_managers_page_hears_of_a_manager_added_its_token_replaced_and_revoked(
    svc: ServerServices,
) -> None:
    """Each change of a Manager's account is a "managers" event at once, not news at the
    page's next refresh."""

    async def heard(change: Callable[[], object]) -> list[str]:
        svc.events.bind(asyncio.get_running_loop())
        page = Subscriber()  # the Managers page follows every event
        svc.events.subscribers.add(page)
        try:
            change()
            await until(lambda: page.pending)
            return [event.split("\n")[0] for event in page.take()]
        finally:
            svc.events.subscribers.discard(page)

    for change in (
        lambda: svc.auth.create_manager("studio"),
        lambda: svc.auth.revoke_manager("studio"),
        lambda: svc.auth.rotate_manager("studio"),
    ):
        assert asyncio.run(heard(change)) == ["event: managers"]


def test_a_held_sync_answers_when_an_operator_puts_a_worker_to_sleep(
    svc: ServerServices,
) -> None:
    manager = add_manager(svc, "site")

    async def scenario() -> None:
        sync = held_sync(svc, manager)
        await held(svc, sync)
        await asyncio.to_thread(svc.leases.set_worker_state, "site", "w1", "asleep")
        assert (await answer(sync)).worker_states == {"w1": "asleep"}

    asyncio.run(scenario())


def test_a_held_sync_gets_the_preview_task_when_the_last_render_completes_elsewhere(
    svc: ServerServices,
) -> None:
    renderer, waiting = add_manager(svc, "renderer"), add_manager(svc, "waiting")
    sub = wire.JobSubmission(
        name="preview",
        files={"s.blend": svc.blobs.put_file(BLEND)},
        settings={"blend": "s.blend", "frames": "1-2", "preview_video": True},
    )
    job = svc.jobs.submit(sub, submitter="alice")
    renders = lease_sync(svc, renderer, want=5).leases
    assert [lease.type for lease in renders] == ["blender-render", "blender-render"]

    async def scenario() -> None:
        sync = held_sync(svc, waiting)
        await held(svc, sync)
        done = [task_update(lease.task_id, TaskStatus.COMPLETED, worker="w1") for lease in renders]
        await asyncio.to_thread(svc.leases.apply_updates, renderer, done)
        (preview,) = (await answer(sync)).leases
        assert (preview.job_id, preview.type) == (job.id, "ffmpeg")

    asyncio.run(scenario())


def test_a_held_sync_leases_by_the_workers_its_manager_reported_meanwhile(
    svc: ServerServices,
) -> None:
    """Held while its only Worker was awake; the Manager's ordinary sync since says it sleeps."""
    manager = add_manager(svc, "site")
    asleep = [wire.WorkerSummary(name="w1", status="asleep", blender_version="5.0.1")]

    async def scenario() -> None:
        sync = held_sync(svc, manager, wait_s=1.0)
        await held(svc, sync)
        await asyncio.to_thread(lease_sync, svc, manager, 0, None, asleep)
        job = add_job(svc, "1")
        assert (await answer(sync)).leases == []
        assert [t.status for t in svc.jobs.tasks(job.id)] == [TaskStatus.QUEUED]

    asyncio.run(scenario())


def test_a_held_sync_with_nothing_to_tell_answers_after_its_wait(svc: ServerServices) -> None:
    manager = add_manager(svc, "site")

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        reply = await answer(held_sync(svc, manager, wait_s=0.3))
        assert reply.leases == [] and reply.revoked == []
        assert loop.time() - started >= 0.3

    asyncio.run(scenario())


def test_a_sync_that_wants_nothing_or_gets_tasks_is_answered_at_once(svc: ServerServices) -> None:
    manager = add_manager(svc, "site")
    add_job(svc, "1")

    async def scenario() -> None:
        assert (await answer(held_sync(svc, manager, want=0))).leases == []
        assert len((await answer(held_sync(svc, manager, want=3))).leases) == 1

    asyncio.run(scenario())


def test_nothing_is_leased_to_a_manager_that_hung_up_while_held(svc: ServerServices) -> None:
    manager = add_manager(svc, "site")

    async def gone() -> bool:
        return True

    async def scenario() -> None:
        lease_sync(svc, manager)
        request = wire.ManagerSync(want=1, workers=ONE_CPU_WORKER, wait_s=WAIT_S)
        sync = asyncio.create_task(svc.leases.sync_waiting(manager, request, gone=gone))
        await held(svc, sync)
        job = add_job(svc, "1")
        assert (await answer(sync)).leases == []
        assert [t.status for t in svc.jobs.tasks(job.id)] == [TaskStatus.QUEUED]

    asyncio.run(scenario())


def test_a_sync_that_leaves_out_the_workers_leases_for_those_reported_before(
    svc: ServerServices,
) -> None:
    """A busy Manager reports its Workers once a second, not with every sync."""
    manager = add_manager(svc, "site")
    lease_sync(svc, manager)  # reports one idle CPU Worker
    job = add_job(svc, "1-2")
    without = wire.ManagerSync(want=2)
    assert without.workers is None
    reply = asyncio.run(svc.leases.sync_waiting(manager, without))
    assert sorted(lease.frames[0] for lease in reply.leases if lease.job_id == job.id) == [1, 2]
    (site,) = [m for m in svc.leases.managers() if m.name == "site"]
    assert [w.name for w in site.workers] == ["w1"]
