"""Job actions through the services: what each does to tasks and to the Managers' leases."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from serverkit import BLEND, add_job, add_manager, alice, lease_sync, make_services, task_update

from flamenco.blobs import sha256_file
from flamenco.core.actions import JobAction
from flamenco.core.states import JobStatus, TaskStatus
from flamenco.errors import Forbidden, NotFound
from flamenco.server.services import ServerServices


@pytest.fixture(params=["sqlite", "postgres"])
def svc(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ServerServices]:
    yield from make_services(request, tmp_path)


def statuses(svc: ServerServices, job_id: str) -> list[TaskStatus]:
    return [t.status for t in svc.jobs.tasks(job_id)]


def test_cancel_revokes_held_tasks_and_keeps_finished_ones(svc: ServerServices) -> None:
    site = add_manager(svc, "site")
    job = add_job(svc, "1-3")
    first, second = lease_sync(svc, site, want=2).leases
    svc.leases.apply_updates(site, [task_update(first.task_id, TaskStatus.COMPLETED)])

    canceled = svc.jobs.act(job.id, JobAction.CANCEL, alice(svc))
    assert canceled.status == JobStatus.CANCELED
    assert statuses(svc, job.id) == [TaskStatus.COMPLETED, TaskStatus.CANCELED, TaskStatus.CANCELED]
    reply = lease_sync(svc, site, want=5, held=[second.task_id])
    assert reply.revoked == [second.task_id]  # the Manager stops its render
    assert reply.leases == []


def test_pause_then_resume_runs_the_rest(svc: ServerServices) -> None:
    site = add_manager(svc, "site")
    job = add_job(svc, "1-2")
    (held,) = lease_sync(svc, site, want=1).leases
    assert svc.jobs.act(job.id, JobAction.PAUSE, alice(svc)).status == JobStatus.PAUSED
    assert lease_sync(svc, site, want=5, held=[held.task_id]).revoked == [held.task_id]
    assert svc.jobs.act(job.id, JobAction.RESUME, alice(svc)).status == JobStatus.QUEUED
    assert len(lease_sync(svc, site, want=5).leases) == 2


def test_requeue_failed_only_reruns_what_failed(svc: ServerServices) -> None:
    site = add_manager(svc, "site")
    svc.leases.max_task_failures = 1
    job = add_job(svc, "1-2")
    good, bad = lease_sync(svc, site, want=2).leases
    svc.leases.apply_updates(
        site,
        [
            task_update(good.task_id, TaskStatus.COMPLETED),
            task_update(bad.task_id, TaskStatus.FAILED, error="x"),
        ],
    )
    assert svc.jobs.get(job.id).status == JobStatus.FAILED

    svc.jobs.act(job.id, JobAction.REQUEUE_FAILED, alice(svc))
    assert statuses(svc, job.id) == [TaskStatus.COMPLETED, TaskStatus.QUEUED]
    assert [lease.task_id for lease in lease_sync(svc, site, want=5).leases] == [bad.task_id]
    # A requeue of a job that still runs starts it afresh; the task held is taken back.
    assert svc.jobs.act(job.id, JobAction.REQUEUE, alice(svc)).status == JobStatus.QUEUED
    assert statuses(svc, job.id) == [TaskStatus.QUEUED, TaskStatus.QUEUED]
    assert lease_sync(svc, site, held=[bad.task_id]).revoked == [bad.task_id]


def test_priority_changes_the_lease_order(svc: ServerServices) -> None:
    site = add_manager(svc, "site")
    first = add_job(svc, "1")
    second = add_job(svc, "1")
    svc.jobs.set_priority(second.id, 99, alice(svc))
    assert lease_sync(svc, site, want=1).leases[0].job_id == second.id
    assert svc.jobs.get(first.id).priority == 50


def test_delete_removes_the_job_and_blobs_no_other_job_uses(svc: ServerServices) -> None:
    shared = add_job(svc, "1")
    doomed = add_job(svc, "1")
    sha = sha256_file(BLEND)  # both jobs use the same scene
    svc.jobs.delete(doomed.id, alice(svc))
    with pytest.raises(NotFound):
        svc.jobs.get(doomed.id)
    assert svc.blobs.has(sha)  # the other job still needs it
    svc.jobs.delete(shared.id, alice(svc))
    assert not svc.blobs.has(sha)


def test_only_the_submitter_or_an_admin_may_act(svc: ServerServices) -> None:
    job = add_job(svc, "1")
    svc.auth.create_user("bob", "pw")
    bob = svc.auth.user_for_token(svc.auth.issue_token("bob"))
    with pytest.raises(Forbidden, match="Only alice or an administrator"):
        svc.jobs.act(job.id, JobAction.CANCEL, bob)
