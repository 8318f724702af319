"""No job hangs silently: it says why it waits, a requeue or unblock lets Workers try again,
a file that cannot render fails its job at once, and tasks a site cannot run go elsewhere."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from serverkit import add_job, add_manager, alice, lease_sync, make_services, task_update

from flamenco import wire
from flamenco.core.actions import JobAction
from flamenco.core.states import JobStatus, TaskStatus
from flamenco.errors import NotFound
from flamenco.server.models import ManagerRow
from flamenco.server.services import ServerServices

SOLO = [wire.WorkerSummary(name="solo", status="awake", blender_version="5.0.1")]
BLOCKED = (
    "Waiting: every Worker that could run it failed it too often (solo); "
    "fix them, then unblock or requeue the job, or add Workers."
)


@pytest.fixture(params=["sqlite", "postgres"])
def svc(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ServerServices]:
    yield from make_services(request, tmp_path)


def fail(svc: ServerServices, site: ManagerRow, task_ids: list[str], **fields: object) -> None:
    updates = [
        task_update(task_id, TaskStatus.FAILED, worker="solo", error="crash", **fields)
        for task_id in task_ids
    ]
    svc.leases.apply_updates(site, updates)


def test_a_job_whose_only_worker_is_blocklisted_says_why_and_unblock_or_requeue_clear_it(
    svc: ServerServices,
) -> None:
    site = add_manager(svc, "site")
    job = add_job(svc, "1-6")
    leases = lease_sync(svc, site, want=4, workers=SOLO).leases
    fail(svc, site, [lease.task_id for lease in leases[:3]])
    # One task is still leased to the site, where no Worker may run it: it must not hide why.
    held = [leases[3].task_id]
    lease_sync(svc, site, held=held, workers=SOLO)
    assert svc.jobs.get(job.id).blocklist == ["solo"]
    assert svc.jobs.get(job.id).waiting_reason == BLOCKED
    assert svc.jobs.get(job.id).last_error == "crash"
    assert lease_sync(svc, site, want=4, held=held, workers=SOLO).leases == []

    with pytest.raises(NotFound, match="Worker 'other' is not kept off job"):
        svc.jobs.unblock(job.id, "other", alice(svc))
    unblocked = svc.jobs.unblock(job.id, "solo", alice(svc))
    assert (unblocked.blocklist, unblocked.waiting_reason) == ([], None)
    again = lease_sync(svc, site, want=6, held=held, workers=SOLO)
    assert len(again.leases) == 5 and again.blocklist == {}

    # Three tasks that never failed fail now: blocked again, by failures after the unblock.
    never_failed = held + [lease.task_id for lease in again.leases if lease.failed_by == []]
    fail(svc, site, never_failed)
    assert svc.jobs.get(job.id).waiting_reason == BLOCKED
    requeued = svc.jobs.act(job.id, JobAction.REQUEUE, alice(svc))
    assert (requeued.status, requeued.blocklist, requeued.last_error) == ("queued", [], None)
    assert {t.failure_count for t in svc.jobs.tasks(job.id)} == {0}
    assert len(lease_sync(svc, site, want=6, workers=SOLO).leases) == 6


def test_a_failure_of_the_file_fails_the_job_at_once_with_its_sentence(
    svc: ServerServices,
) -> None:
    site = add_manager(svc, "site")
    job = add_job(svc, "1-4")
    first, second, third = lease_sync(svc, site, want=3, workers=SOLO).leases
    fail(svc, site, [first.task_id], fault="machine")
    assert svc.jobs.get(job.id).status == JobStatus.ACTIVE  # retried elsewhere

    # Both in one batch, as a fast failure on every Worker arrives: the first fails the job.
    sentence = "Cannot render, no camera"
    no_camera = {"worker": "solo", "error": sentence, "fault": "file"}
    svc.leases.apply_updates(
        site,
        [
            task_update(second.task_id, TaskStatus.FAILED, **no_camera),
            task_update(third.task_id, TaskStatus.FAILED, **no_camera),
        ],
    )
    failed = svc.jobs.get(job.id)
    assert (failed.status, failed.last_error, failed.waiting_reason) == ("failed", sentence, None)
    statuses = {t.id: t.status for t in svc.jobs.tasks(job.id)}
    assert statuses[second.task_id] == TaskStatus.FAILED
    assert statuses[third.task_id] == TaskStatus.CANCELED
    assert set(statuses.values()) == {TaskStatus.FAILED, TaskStatus.CANCELED}
    outcomes = [(e.task_id, e.outcome) for e in svc.jobs.history(job.id) if e.status == "failed"]
    assert (third.task_id, "ignored") in outcomes and (third.task_id, "applied") not in outcomes


def test_a_task_a_site_hands_back_is_queued_for_other_sites_not_leased_back(
    svc: ServerServices,
) -> None:
    here, there = add_manager(svc, "here"), add_manager(svc, "there")
    job = add_job(svc, "1-3")
    kept, given = lease_sync(svc, here, want=2, workers=SOLO).leases
    request = wire.ManagerSync(want=1, held=[kept.task_id], handed_back=[given.task_id])
    reply = svc.leases.sync(here, request)
    assert [lease.task_id for lease in reply.leases] != [given.task_id]
    (task,) = [t for t in svc.jobs.tasks(job.id) if t.id == given.task_id]
    assert (task.status, task.manager) == (TaskStatus.QUEUED, None)
    history = [e for e in svc.jobs.history(job.id) if e.task_id == given.task_id]
    assert [(e.status, e.manager, e.worker) for e in history] == [("queued", "here", None)]

    other = [wire.WorkerSummary(name="elsewhere", status="awake", blender_version="5.0.1")]
    (lease,) = lease_sync(svc, there, want=1, workers=other).leases
    assert lease.task_id == given.task_id
    # Handing back a task the site does not hold changes nothing.
    svc.leases.sync(here, wire.ManagerSync(held=[kept.task_id], handed_back=[given.task_id]))
    (task,) = [t for t in svc.jobs.tasks(job.id) if t.id == given.task_id]
    assert (task.status, task.manager) == (TaskStatus.LEASED, "there")
