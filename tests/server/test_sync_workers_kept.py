"""A Manager's Workers, kept parsed between its syncs (rosters.py), are never stale: a sync
without Workers leases by the latest ones stored, whoever stored them; and the reply's
blocklist names the jobs of the held tasks, also those leasing did not look at. On a real
SQLite file and a real PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from serverkit import BLEND, add_manager, lease_sync, make_services, task_update
from sqlalchemy import update

from flamenco import wire
from flamenco.core.states import TaskStatus
from flamenco.server.models import ManagerRow
from flamenco.server.services import ServerServices


@pytest.fixture(params=["sqlite", "postgres"])
def svc(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ServerServices]:
    yield from make_services(request, tmp_path)


def gpu_job(svc: ServerServices, frames: str) -> wire.Job:
    sub = wire.JobSubmission(
        name="gpu",
        files={"s.blend": svc.blobs.put_file(BLEND)},
        settings={"blend": "s.blend", "frames": frames, "render_device": "OPTIX"},
    )
    return svc.jobs.submit(sub, submitter="alice")


def summary(name: str, optix: bool, status: str = "awake") -> wire.WorkerSummary:
    gpus = [wire.GpuInfo(index=0, vendor="NVIDIA", model="t", backends=["OPTIX"])]
    return wire.WorkerSummary(
        name=name, status=status, blender_version="5.0.1", gpus=gpus if optix else []
    )


def unreported(
    svc: ServerServices, manager: ManagerRow, want: int = 0, held: list[str] | None = None
) -> wire.ManagerSyncReply:
    """A sync that leaves the Manager's Workers out, as most of a busy site's syncs do."""
    return svc.leases.sync(manager, wire.ManagerSync(want=want, held=held or [], workers=None))


def store_workers(svc: ServerServices, manager: ManagerRow, *workers: wire.WorkerSummary) -> None:
    """Write the Manager's Workers as another Server process's sync would: not through this
    LeaseService, so nothing it keeps knows."""
    rows = [w.model_dump(mode="json") for w in workers]
    with svc.leases.sessions.begin() as s:
        s.execute(update(ManagerRow).where(ManagerRow.id == manager.id).values(workers=rows))


def test_a_sync_without_workers_leases_by_the_latest_workers_stored(svc: ServerServices) -> None:
    site = add_manager(svc, "site")
    gpu_job(svc, "1-6")
    (first,) = lease_sync(svc, site, want=1, workers=[summary("rtx", optix=True)]).leases
    (second,) = unreported(svc, site, want=1, held=[first.task_id]).leases

    # The site now reports only a CPU Worker: its next syncs without Workers lease no GPU task.
    lease_sync(svc, site, held=[first.task_id, second.task_id], workers=[summary("cpu", False)])
    assert unreported(svc, site, want=1).leases == []

    # Stored behind this service's back: seen at the next sync, either way.
    store_workers(svc, site, summary("rtx", optix=True))
    assert len(unreported(svc, site, want=1).leases) == 1
    store_workers(svc, site, summary("rtx", optix=True, status="asleep"))
    assert unreported(svc, site, want=1).leases == []
    store_workers(svc, site, summary("rtx", optix=True))
    assert len(unreported(svc, site, want=2).leases) == 2


def test_the_blocklist_names_the_jobs_of_held_tasks_that_leasing_did_not_look_at(
    svc: ServerServices,
) -> None:
    site = add_manager(svc, "site")
    job = gpu_job(svc, "1-4")
    both = [summary("bad", optix=True), summary("good", optix=True)]
    leases = lease_sync(svc, site, want=4, workers=both).leases
    failures = [
        task_update(lease.task_id, TaskStatus.FAILED, worker="bad", error="crash")
        for lease in leases[:3]
    ]
    svc.leases.apply_updates(site, failures)
    held = [leases[3].task_id]

    # Nothing wanted: leasing looks at no job, the held task's job is still told.
    assert lease_sync(svc, site, held=held, workers=both).blocklist == {job.id: ["bad"]}
    # Wanted, and leasing reads the same job's blocklist: told once, the same.
    reply = lease_sync(svc, site, want=2, held=held, workers=both)
    assert reply.blocklist == {job.id: ["bad"]}
    assert len(reply.leases) == 2
    assert reply.revoked == []
