"""--keep-days: finished jobs older than N days go, with their frames and unshared blobs.

Service calls on SQLite and PostgreSQL; the retention's clock is injected, and a job's age is
its `updated` time, set back in the database as if it had finished long ago.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from PIL import Image
from serverkit import BLEND, add_manager, alice, lease_sync, make_services, one_chunk, task_update
from sqlalchemy import update

from flamenco import wire
from flamenco.blobs import sha256_file
from flamenco.core.actions import JobAction
from flamenco.core.states import JobStatus, TaskStatus
from flamenco.db import utcnow
from flamenco.errors import NotFound
from flamenco.server.models import JobRow, ManagerRow
from flamenco.server.retention import JobRetention
from flamenco.server.services import ServerServices


@pytest.fixture(params=["sqlite", "postgres"])
def svc(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ServerServices]:
    yield from make_services(request, tmp_path)


def _png(colour: tuple[int, int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (32, 16), colour).save(out, "PNG")
    return out.getvalue()


def _rendered_job(
    svc: ServerServices, site: ManagerRow, colour: tuple[int, int, int]
) -> tuple[wire.Job, str, str]:
    """A completed one-frame job: the shared scene, a texture of its own and its frame.
    Returns the job, its texture's hash and its frame's hash."""
    scene = svc.blobs.put_file(BLEND)
    texture = svc.blobs.put_file(_write(svc, _png(colour)))
    job = svc.jobs.submit(
        wire.JobSubmission(
            name=f"shot {colour}",
            files={"s.blend": scene, "tex.png": texture},
            settings={"blend": "s.blend", "frames": "1", "chunk_size": 1},
        ),
        submitter="alice",
    )
    (lease,) = lease_sync(svc, site, want=1).leases
    frame = _png(tuple(255 - c for c in colour))  # type: ignore[arg-type]
    frame_sha = hashlib.sha256(frame).hexdigest()
    asyncio.run(
        svc.jobs.receive_frame(site.id, lease.task_id, 1, "f_0001.png", frame_sha, one_chunk(frame))
    )
    svc.leases.apply_updates(site, [task_update(lease.task_id, TaskStatus.COMPLETED, worker="w")])
    assert svc.jobs.get(job.id).status == JobStatus.COMPLETED
    return job, texture, frame_sha


def _write(svc: ServerServices, data: bytes) -> Path:
    path = svc.settings.data_dir / f"upload-{hashlib.sha256(data).hexdigest()[:8]}.png"
    path.write_bytes(data)
    return path


def _age(svc: ServerServices, job_id: str, days: float) -> None:
    """As if the job had last changed `days` ago."""
    with svc.jobs.sessions.begin() as s:
        s.execute(
            update(JobRow)
            .where(JobRow.id == job_id)
            .values(updated=utcnow() - timedelta(days=days))
        )


def _gone(svc: ServerServices, job_id: str) -> bool:
    try:
        svc.jobs.get(job_id)
    except NotFound:
        return True
    return False


def test_keep_days_deletes_an_old_finished_job_and_its_unshared_blobs_only(
    svc: ServerServices,
) -> None:
    site = add_manager(svc, "site")
    old, old_texture, old_frame = _rendered_job(svc, site, (200, 40, 0))
    recent, recent_texture, recent_frame = _rendered_job(svc, site, (0, 40, 200))
    old_output = Path(old.output_dir)
    assert any(old_output.iterdir()), "the old job's frame is in its output folder"
    # An old job that is not finished stays whatever its age: here a paused one.
    paused = svc.jobs.submit(
        wire.JobSubmission(
            name="paused",
            files={"s.blend": svc.blobs.put_file(BLEND)},
            settings={"blend": "s.blend", "frames": "1", "chunk_size": 1},
        ),
        submitter="alice",
    )
    svc.jobs.act(paused.id, JobAction.PAUSE, alice(svc))
    _age(svc, old.id, days=10)
    _age(svc, paused.id, days=30)
    scene = sha256_file(BLEND)

    retention = JobRetention(svc.jobs.sessions, svc.jobs, keep_days=7)
    assert retention.prune() == [old.id]

    assert _gone(svc, old.id)
    assert not old_output.exists()
    assert not (svc.settings.data_dir / "thumbnails" / old.id).exists()
    assert not svc.blobs.has(old_texture) and not svc.blobs.has(old_frame)
    # The scene is shared with the jobs that stay; theirs are untouched.
    assert svc.blobs.has(scene)
    assert svc.blobs.has(recent_texture) and svc.blobs.has(recent_frame)
    assert svc.jobs.get(recent.id).frames_done == 1
    assert svc.jobs.get(paused.id).status == JobStatus.PAUSED
    assert retention.prune() == []  # nothing more is old enough


def test_the_retention_clock_decides_what_is_old(svc: ServerServices) -> None:
    site = add_manager(svc, "site")
    job, texture, frame = _rendered_job(svc, site, (10, 120, 10))
    now = utcnow()
    later = JobRetention(svc.jobs.sessions, svc.jobs, keep_days=7, now=lambda: now)
    assert later.prune() == []
    eight_days_on: datetime = now + timedelta(days=8)
    later.now = lambda: eight_days_on
    assert later.prune() == [job.id]
    # No job is left that uses the scene, so it goes too.
    assert not svc.blobs.has(sha256_file(BLEND))
    assert not svc.blobs.has(texture) and not svc.blobs.has(frame)


def test_keep_days_zero_keeps_everything(svc: ServerServices) -> None:
    site = add_manager(svc, "site")
    job, _, _ = _rendered_job(svc, site, (90, 90, 90))
    _age(svc, job.id, days=3650)
    assert JobRetention(svc.jobs.sessions, svc.jobs, keep_days=0).prune() == []
    assert svc.jobs.get(job.id).status == JobStatus.COMPLETED


def test_a_job_requeued_since_it_was_found_old_is_kept(svc: ServerServices) -> None:
    """The one delete door checks again, in its transaction, that the job is still old and
    finished: a requeue between the look and the delete wins."""
    site = add_manager(svc, "site")
    job, _, _ = _rendered_job(svc, site, (1, 2, 3))
    _age(svc, job.id, days=10)
    retention = JobRetention(svc.jobs.sessions, svc.jobs, keep_days=7)
    assert retention.expired() == [job.id]
    svc.jobs.act(job.id, JobAction.REQUEUE, alice(svc))
    cutoff = utcnow() - timedelta(days=7)
    assert svc.jobs.delete(job.id, None, finished_before=cutoff) is False
    assert svc.jobs.get(job.id).status == JobStatus.QUEUED
