"""Jobs that wait for jobs (submit --after) through the services, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
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
from flamenco.core.actions import JobAction
from flamenco.core.states import JobStatus, TaskStatus
from flamenco.db import utcnow
from flamenco.errors import Conflict, NotFound, Unprocessable
from flamenco.server.models import ManagerRow
from flamenco.server.services import ServerServices


@pytest.fixture(params=["sqlite", "postgres"])
def svc(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ServerServices]:
    yield from make_services(request, tmp_path)


def add_job_after(svc: ServerServices, frames: str, after: list[str]) -> wire.Job:
    sub = wire.JobSubmission(
        name=f"after {frames}",
        files={"s.blend": svc.blobs.put_file(BLEND)},
        settings={"blend": "s.blend", "frames": frames, "chunk_size": 1},
        after=after,
    )
    return svc.jobs.submit(sub, submitter="alice")


def complete_leases(svc: ServerServices, manager: ManagerRow, leases: list[wire.Lease]) -> None:
    updates = [task_update(lease.task_id, TaskStatus.COMPLETED, worker="w1") for lease in leases]
    svc.leases.apply_updates(manager, updates)


def fail_job(svc: ServerServices, manager: ManagerRow, job_id: str) -> None:
    """Fail the job's only task twice (max_task_failures=2 in serverkit): the job fails."""
    for _ in range(2):
        (lease,) = lease_sync(svc, manager, want=1).leases
        assert lease.job_id == job_id
        update = task_update(lease.task_id, TaskStatus.FAILED, error="boom")
        svc.leases.apply_updates(manager, [update])
    assert svc.jobs.get(job_id).status == JobStatus.FAILED


def test_a_waiting_job_leases_nothing_until_every_job_it_waits_for_completed(
    svc: ServerServices,
) -> None:
    manager = add_manager(svc, "site")
    first, second = add_job(svc, "1-2"), add_job(svc, "1")
    waiting = add_job_after(svc, "1-3", [first.id, second.id, first.id])
    assert waiting.after == sorted([first.id, second.id])
    assert waiting.waiting_reason is not None
    assert f"Waits for job {first.id} (queued, 0 %)" in waiting.waiting_reason
    assert f"Waits for job {second.id} (queued, 0 %)" in waiting.waiting_reason

    leases = lease_sync(svc, manager, want=10).leases
    assert {lease.job_id for lease in leases} == {first.id, second.id}
    complete_leases(svc, manager, [lease for lease in leases if lease.job_id == first.id][:1])
    reason = svc.jobs.get(waiting.id).waiting_reason
    assert reason is not None and f"Waits for job {first.id} (active, 50 %)" in reason
    complete_leases(svc, manager, [lease for lease in leases if lease.job_id == second.id])
    assert svc.jobs.get(second.id).status == JobStatus.COMPLETED
    assert lease_sync(svc, manager, want=10).leases == []  # first is not done yet

    complete_leases(svc, manager, [lease for lease in leases if lease.job_id == first.id][1:])
    assert svc.jobs.get(first.id).status == JobStatus.COMPLETED
    now = svc.jobs.get(waiting.id)
    assert now.status == JobStatus.QUEUED and now.waiting_reason is None
    leases = lease_sync(svc, manager, want=10).leases
    assert [(lease.job_id, lease.frames) for lease in leases] == [
        (waiting.id, [1]),
        (waiting.id, [2]),
        (waiting.id, [3]),
    ]
    complete_leases(svc, manager, leases)
    assert svc.jobs.get(waiting.id).status == JobStatus.COMPLETED


def test_a_held_sync_answers_as_soon_as_a_completion_frees_a_waiting_job(
    svc: ServerServices,
) -> None:
    """A Manager's long-polled sync is woken by the completion that frees a waiting job, not
    left held until its wait runs out."""
    baker, waiter = add_manager(svc, "baker"), add_manager(svc, "waiter")
    bake = add_job(svc, "1")
    render = add_job_after(svc, "1", [bake.id])
    (lease,) = lease_sync(svc, baker, want=1).leases

    async def scenario() -> wire.ManagerSyncReply:
        lease_sync(svc, waiter)  # told everything: the next sync may be held
        request = wire.ManagerSync(want=1, workers=ONE_CPU_WORKER, wait_s=30.0)
        sync = asyncio.create_task(svc.leases.sync_waiting(waiter, request))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 5.0
        while not (svc.leases.bell.waiting or sync.done()):
            assert loop.time() < deadline, "the sync was never held"
            await asyncio.sleep(0.01)
        assert not sync.done(), f"answered at once: {sync.result()}"
        await asyncio.to_thread(complete_leases, svc, baker, [lease])
        return await asyncio.wait_for(sync, 5.0)  # held up to 15 s otherwise

    reply = asyncio.run(scenario())
    assert [lease.job_id for lease in reply.leases] == [render.id]


def test_a_failed_prerequisite_keeps_it_waiting_until_requeued_and_completed(
    svc: ServerServices,
) -> None:
    manager = add_manager(svc, "site")
    bake = add_job(svc, "1")
    render = add_job_after(svc, "1-2", [bake.id])
    fail_job(svc, manager, bake.id)
    assert svc.jobs.get(render.id).waiting_reason == (
        f"Job {bake.id} failed; requeue it or cancel this one."
    )
    assert lease_sync(svc, manager, want=5).leases == []

    svc.jobs.act(bake.id, JobAction.REQUEUE, alice(svc))
    reason = svc.jobs.get(render.id).waiting_reason
    assert reason == f"Waits for job {bake.id} (queued, 0 %)."
    (lease,) = lease_sync(svc, manager, want=5).leases
    assert lease.job_id == bake.id  # the prerequisite again, not the waiting job
    complete_leases(svc, manager, [lease])
    leases = lease_sync(svc, manager, want=5).leases
    assert [lease.job_id for lease in leases] == [render.id, render.id]


def test_a_canceled_prerequisite_says_so_and_canceling_the_waiting_job_ends_it(
    svc: ServerServices,
) -> None:
    manager = add_manager(svc, "site")
    bake = add_job(svc, "1")
    render = add_job_after(svc, "1", [bake.id])
    svc.jobs.act(bake.id, JobAction.CANCEL, alice(svc))
    assert svc.jobs.get(render.id).waiting_reason == (
        f"Job {bake.id} canceled; requeue it or cancel this one."
    )
    canceled = svc.jobs.act(render.id, JobAction.CANCEL, alice(svc))
    assert canceled.status == JobStatus.CANCELED and canceled.waiting_reason is None
    assert lease_sync(svc, manager, want=5).leases == []


def test_a_requeued_waiting_job_waits_again_for_a_requeued_prerequisite(
    svc: ServerServices,
) -> None:
    manager = add_manager(svc, "site")
    bake = add_job(svc, "1")
    render = add_job_after(svc, "1", [bake.id])
    complete_leases(svc, manager, lease_sync(svc, manager, want=1).leases)
    complete_leases(svc, manager, lease_sync(svc, manager, want=1).leases)
    assert svc.jobs.get(render.id).status == JobStatus.COMPLETED
    svc.jobs.act(bake.id, JobAction.REQUEUE, alice(svc))
    svc.jobs.act(render.id, JobAction.REQUEUE, alice(svc))
    assert svc.jobs.get(render.id).waiting_reason == f"Waits for job {bake.id} (queued, 0 %)."
    assert [lease.job_id for lease in lease_sync(svc, manager, want=5).leases] == [bake.id]


def test_a_prerequisite_deleted_unfinished_keeps_it_waiting(svc: ServerServices) -> None:
    manager = add_manager(svc, "site")
    done, gone = add_job(svc, "1"), add_job(svc, "1")
    render = add_job_after(svc, "1", [done.id, gone.id])
    (lease, _) = lease_sync(svc, manager, want=2).leases
    assert lease.job_id == done.id
    complete_leases(svc, manager, [lease])
    svc.jobs.act(gone.id, JobAction.CANCEL, alice(svc))
    svc.jobs.delete(gone.id, alice(svc))
    assert svc.jobs.get(render.id).waiting_reason == (
        f"Job {gone.id} was deleted before it completed; cancel this one."
    )
    assert lease_sync(svc, manager, want=5).leases == []


def test_a_completed_prerequisite_is_kept_while_a_job_that_gets_its_files_is_unfinished(
    svc: ServerServices,
) -> None:
    """A bake's files reach the render that waits for it through the render's leases: the bake
    is not deleted, by a user or by --keep-days, until the render has finished."""
    manager = add_manager(svc, "site")
    bake = add_job(svc, "1")
    render = add_job_after(svc, "1-2", [bake.id])
    (baking,) = lease_sync(svc, manager, want=5).leases
    complete_leases(svc, manager, [baking])
    (first,) = lease_sync(svc, manager, want=1).leases  # one render task out, one queued

    with pytest.raises(Conflict) as refused:
        svc.jobs.delete(bake.id, alice(svc))
    assert refused.value.message == (
        f"Job {render.id} waits for job {bake.id} and gets its files; delete {bake.id} once "
        f"{render.id} has finished, or cancel {render.id} first."
    )
    tomorrow = utcnow() + timedelta(days=1)
    assert svc.jobs.delete(bake.id, None, finished_before=tomorrow) is False  # --keep-days
    assert svc.jobs.get(bake.id).status == JobStatus.COMPLETED
    assert first.job_id == render.id
    (last,) = lease_sync(svc, manager, want=5, held=[first.task_id]).leases
    assert last.job_id == render.id  # the rest of the render still leases

    complete_leases(svc, manager, [first, last])
    assert svc.jobs.get(render.id).status == JobStatus.COMPLETED
    assert svc.jobs.delete(bake.id, None, finished_before=tomorrow) is True
    with pytest.raises(NotFound):
        svc.jobs.get(bake.id)


def test_an_unknown_job_to_wait_for_is_refused_with_one_sentence(svc: ServerServices) -> None:
    with pytest.raises(Unprocessable) as refused:
        add_job_after(svc, "1", ["nosuchjob"])
    assert str(refused.value) == "There is no job with id 'nosuchjob' to wait for."
    assert svc.jobs.list() == []


def test_another_users_job_may_be_waited_for(svc: ServerServices) -> None:
    """Every user sees every job (the job list is the farm's), so any job may be named."""
    svc.auth.create_user("bob", "secret12")
    sub = wire.JobSubmission(
        name="bob's",
        files={"s.blend": svc.blobs.put_file(BLEND)},
        settings={"blend": "s.blend", "frames": "1"},
    )
    bobs = svc.jobs.submit(sub, submitter="bob")
    mine = add_job_after(svc, "1", [bobs.id])
    assert mine.after == [bobs.id] and mine.waiting_reason is not None
