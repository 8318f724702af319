"""Updates applied to tasks read as plain rows (transitions.ReportedTask), written in bulk by
transitions.write_reported_tasks: the same outcome as the one-task door on an ORM row, a batch
whose file fault fails its job between updates of the job's other tasks, and a task changed by
another transaction between the batch's read and its write."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from serverkit import add_job, add_manager, alice, lease_sync, make_services, task_update
from sqlalchemy import select
from sqlalchemy.orm import sessionmaker
from test_transitions import J, _allowed, _expected, _store, _task_states, sessions

from flamenco import wire
from flamenco.core.actions import JobAction
from flamenco.core.states import TASK_TRANSITIONS, InvalidTransition, JobStatus, TaskStatus
from flamenco.server.leases import LeaseService
from flamenco.server.models import TaskRow
from flamenco.server.services import ServerServices
from flamenco.server.transitions import (
    REPORTED_COLUMNS,
    ReportedTask,
    report_task,
    write_reported_tasks,
)

__all__ = ["sessions"]  # the module-scoped database of test_transitions, used here too

SOLO = [wire.WorkerSummary(name="solo", status="awake", blender_version="5.0.1")]


@pytest.fixture(params=["sqlite", "postgres"])
def svc(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ServerServices]:
    yield from make_services(request, tmp_path)


@pytest.mark.parametrize(("old", "new"), list(itertools.product(TaskStatus, TaskStatus)))
def test_a_reported_row_is_written_exactly_as_the_one_task_door_writes_a_task_row(
    sessions: sessionmaker, old: TaskStatus, new: TaskStatus
) -> None:
    job_id = _store(sessions, J.ACTIVE, [old])
    (before,) = _task_states(sessions, job_id)
    allowed = _allowed(TASK_TRANSITIONS, old, new)
    with sessions.begin() as s:
        row = s.execute(select(*REPORTED_COLUMNS).where(TaskRow.job_id == job_id)).one()
        task = ReportedTask(*row)
        if allowed:
            report_task(task, new)
        else:
            with pytest.raises(InvalidTransition):
                report_task(task, new)
        write_reported_tasks(s, [task])
    (after,) = _task_states(sessions, job_id)
    assert after == (_expected("report", new, before) if allowed else before)


def test_a_file_fault_fails_the_job_between_the_updates_of_its_other_tasks(
    svc: ServerServices,
) -> None:
    """What the batch did to the job's other tasks before the fault is kept (the job's status
    is counted with it), and what it says of them after finds them canceled."""
    site = add_manager(svc, "site")
    job = add_job(svc, "1-4")
    first, second, third = lease_sync(svc, site, want=3, workers=SOLO).leases
    no_camera = {"worker": "solo", "error": "Cannot render, no camera", "fault": "file"}
    svc.leases.apply_updates(
        site,
        [
            task_update(first.task_id, TaskStatus.COMPLETED, worker="solo"),
            task_update(third.task_id, TaskStatus.ACTIVE, worker="solo", log=["started"]),
            task_update(second.task_id, TaskStatus.FAILED, **no_camera),
            task_update(third.task_id, TaskStatus.COMPLETED, worker="solo", log=["done"]),
        ],
    )
    assert svc.jobs.get(job.id).status == JobStatus.FAILED
    statuses = {t.id: t.status for t in svc.jobs.tasks(job.id)}
    assert [statuses[lease.task_id] for lease in (first, second, third)] == [
        TaskStatus.COMPLETED,
        TaskStatus.FAILED,
        TaskStatus.CANCELED,
    ]
    outcomes = [(e.task_id, e.status, e.outcome) for e in svc.jobs.history(job.id)]
    assert (third.task_id, TaskStatus.ACTIVE, "applied") in outcomes
    assert (third.task_id, TaskStatus.COMPLETED, "ignored") in outcomes
    # The log of an ignored update is kept all the same, as before the fault.
    assert svc.jobs.task_log(job.id, third.task_id) == "started\ndone\n"


@pytest.mark.parametrize("svc", ["sqlite"], indirect=True)  # PostgreSQL locks the rows read
def test_a_task_changed_after_the_batch_read_it_is_applied_against_its_new_status(
    svc: ServerServices, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite takes no lock on a read: a job canceled between the batch's read of its tasks
    and its write is not overwritten with the completion read before; the batch is applied
    again, and the late completion recorded as ignored."""
    site = add_manager(svc, "site")
    job = add_job(svc, "1-2")
    (lease,) = lease_sync(svc, site, want=1, workers=SOLO).leases
    original = LeaseService._lock_tasks
    reads = []

    def cancel_after_the_first_read(s: Any, task_ids: set[str]) -> dict[str, ReportedTask]:
        tasks = original(s, task_ids)
        reads.append(sorted(task_ids))
        if len(reads) == 1:
            svc.jobs.act(job.id, JobAction.CANCEL, alice(svc))
        return tasks

    monkeypatch.setattr(LeaseService, "_lock_tasks", staticmethod(cancel_after_the_first_read))
    done = task_update(lease.task_id, TaskStatus.COMPLETED, worker="solo")
    assert svc.leases.apply_updates(site, [done]) == [done.update_id]
    assert reads == [[lease.task_id]] * 2
    assert {t.id: t.status for t in svc.jobs.tasks(job.id)}[lease.task_id] == TaskStatus.CANCELED
    assert svc.jobs.get(job.id).status == JobStatus.CANCELED
    outcomes = [(e.status, e.outcome) for e in svc.jobs.history(job.id)]
    assert outcomes == [(TaskStatus.COMPLETED, "ignored")]
