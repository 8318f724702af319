"""The Server's services called directly, on a real SQLite file and a real PostgreSQL."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from serverkit import add_job, add_manager, lease_sync, make_services, task_update
from sqlalchemy import select, update

from flamenco import wire
from flamenco.core.states import JobStatus, TaskStatus
from flamenco.db import utcnow
from flamenco.server.models import ManagerRow, TaskRow
from flamenco.server.services import ServerServices


@pytest.fixture(params=["sqlite", "postgres"])
def svc(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ServerServices]:
    yield from make_services(request, tmp_path)


def test_tasks_are_leased_by_priority_then_age(svc: ServerServices) -> None:
    manager = add_manager(svc, "site")
    low = add_job(svc, "1-2", priority=10)
    high = add_job(svc, "1-2", priority=90)
    leases = lease_sync(svc, manager, want=3).leases
    assert [(lease.job_id, lease.frames) for lease in leases] == [
        (high.id, [1]),
        (high.id, [2]),
        (low.id, [1]),
    ]
    assert svc.jobs.get(high.id).status == JobStatus.ACTIVE
    assert lease_sync(svc, manager, want=5).leases[0].job_id == low.id
    assert lease_sync(svc, manager, want=5).leases == []


def test_updates_complete_the_job_and_replays_change_nothing(svc: ServerServices) -> None:
    manager = add_manager(svc, "site")
    job = add_job(svc, "1-4", chunk=2)
    leases = lease_sync(svc, manager, want=2).leases
    for lease in leases:
        done = task_update(lease.task_id, TaskStatus.COMPLETED, worker="w1", log=["Saved: frame"])
        assert svc.leases.apply_updates(manager, [done, done]) == [done.update_id] * 2
    tasks = svc.jobs.tasks(job.id)
    assert [t.status for t in tasks] == [TaskStatus.COMPLETED] * 2
    assert svc.jobs.get(job.id).status == JobStatus.COMPLETED
    # A replay of the first update after the job ended is acknowledged and ignored.
    again = task_update(leases[0].task_id, TaskStatus.ACTIVE)
    svc.leases.apply_updates(manager, [again])
    assert svc.jobs.tasks(job.id)[0].status == TaskStatus.COMPLETED


def test_an_expired_lease_goes_to_another_manager_and_the_first_completion_wins(
    svc: ServerServices,
) -> None:
    late, other = add_manager(svc, "late"), add_manager(svc, "other")
    job = add_job(svc, "1")
    svc.leases.lease_timeout = timedelta(0)  # the first lease is expired as soon as it is made
    (first,) = lease_sync(svc, late, want=1).leases
    svc.leases.lease_timeout = timedelta(minutes=5)
    (second,) = lease_sync(svc, other, want=1).leases
    assert second.task_id == first.task_id
    assert lease_sync(svc, late, held=[first.task_id]).revoked == [first.task_id]

    svc.leases.apply_updates(other, [task_update(second.task_id, TaskStatus.COMPLETED, worker="b")])
    svc.leases.apply_updates(late, [task_update(first.task_id, TaskStatus.COMPLETED, worker="a")])
    (task,) = svc.jobs.tasks(job.id)
    assert task.status == TaskStatus.COMPLETED and task.worker == "b"


def test_a_failing_task_is_retried_then_fails_the_job(svc: ServerServices) -> None:
    manager = add_manager(svc, "site")
    job = add_job(svc, "1")
    (lease,) = lease_sync(svc, manager, want=1).leases
    svc.leases.apply_updates(manager, [task_update(lease.task_id, TaskStatus.FAILED, error="boom")])
    (task,) = svc.jobs.tasks(job.id)
    assert task.status == TaskStatus.SOFT_FAILED and task.failure_count == 1

    (again,) = lease_sync(svc, manager, want=1).leases
    assert again.task_id == lease.task_id
    svc.leases.apply_updates(manager, [task_update(lease.task_id, TaskStatus.FAILED, error="boom")])
    (task,) = svc.jobs.tasks(job.id)
    assert task.status == TaskStatus.FAILED
    assert svc.jobs.get(job.id).status == JobStatus.FAILED


def test_a_manager_cannot_touch_another_managers_task(svc: ServerServices) -> None:
    owner, intruder = add_manager(svc, "owner"), add_manager(svc, "intruder")
    job = add_job(svc, "1")
    (lease,) = lease_sync(svc, owner, want=1).leases
    svc.leases.apply_updates(intruder, [task_update(lease.task_id, TaskStatus.COMPLETED)])
    assert svc.jobs.tasks(job.id)[0].status == TaskStatus.LEASED


def test_a_sync_renews_the_held_leases_that_are_due_and_revokes_the_rest(
    svc: ServerServices,
) -> None:
    manager, other = add_manager(svc, "site"), add_manager(svc, "other")
    job = add_job(svc, "1-3")
    due, fresh = lease_sync(svc, manager, want=2).leases
    (elsewhere,) = lease_sync(svc, other, want=1).leases
    soon = utcnow() + timedelta(seconds=10)  # renewal due: over a quarter of the timeout gone
    with svc.leases.sessions.begin() as s:
        s.execute(update(TaskRow).where(TaskRow.id == due.task_id).values(lease_expires=soon))

    held = [due.task_id, fresh.task_id, elsewhere.task_id, "no-such-task"]
    reply = lease_sync(svc, manager, held=held)

    assert reply.revoked == [elsewhere.task_id, "no-such-task"]
    with svc.leases.sessions() as s:
        rows = s.execute(select(TaskRow.id, TaskRow.lease_expires).where(TaskRow.job_id == job.id))
        expires = {task_id: when for task_id, when in rows}
    assert expires[due.task_id] > soon + timedelta(seconds=60)  # renewed for the full timeout
    assert expires[fresh.task_id] == fresh.lease_expires  # not written again
    assert expires[elsewhere.task_id] == elsewhere.lease_expires  # not this Manager's


def test_a_bad_worker_row_is_left_out_and_the_managers_other_workers_still_get_tasks(
    svc: ServerServices, caplog: pytest.LogCaptureFixture
) -> None:
    """One Worker's bad row (a load that is not a number, as an older Manager sent it) costs
    its site nothing: the sync is taken, the other Workers recorded and leased for."""
    manager = add_manager(svc, "site")
    job = add_job(svc, "1")
    request = wire.ManagerSync.model_validate(
        {
            "want": 1,
            "workers": [
                {"name": "bad", "status": "awake", "cpu_percent": None},
                {"name": "good", "status": "awake", "blender_version": "5.0.1"},
            ],
        }
    )
    with caplog.at_level(logging.WARNING, logger="flamenco.server.leases"):
        (lease,) = svc.leases.sync(manager, request).leases
    assert lease.job_id == job.id
    (site,) = svc.leases.managers()
    assert [w.name for w in site.workers] == ["good"]
    assert "Manager site: a Worker's row was left out: Worker 'bad': cpu_percent" in caplog.text
    # A bad row already stored (from before rows were checked) is left out when read, too.
    with svc.leases.sessions.begin() as s:
        s.execute(
            update(ManagerRow)
            .where(ManagerRow.id == manager.id)
            .values(workers=[{"name": "stored-bad", "status": "awake", "cpu_percent": None}])
        )
    assert svc.leases.managers()[0].workers == []
    assert lease_sync(svc, manager, held=[lease.task_id], workers=None).revoked == []
