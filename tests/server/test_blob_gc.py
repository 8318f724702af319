"""Deleting a job never frees a blob that a submission in flight asked about or uploaded."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from serverkit import BLEND, add_job, alice, make_services

from flamenco import wire
from flamenco.blobs import sha256_file
from flamenco.db import utcnow
from flamenco.errors import Unprocessable
from flamenco.server.blob_gc import CLAIM_GRACE_S
from flamenco.server.services import ServerServices


@pytest.fixture(params=["sqlite", "postgres"])
def svc(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ServerServices]:
    yield from make_services(request, tmp_path)


class Clock:
    """The collector's idea of now, moved on by the test instead of waiting ten minutes."""

    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock(svc: ServerServices) -> Clock:
    clock = Clock()
    svc.blob_gc.now = clock
    return clock


def submission(files: dict[str, str]) -> wire.JobSubmission:
    return wire.JobSubmission(
        name="next shot",
        files=files,
        settings={"blend": "s.blend", "frames": "1", "chunk_size": 1},
    )


async def chunks_of(path: Path) -> AsyncIterator[bytes]:
    yield path.read_bytes()


def test_a_blob_a_submission_was_told_the_server_has_survives_a_delete(
    svc: ServerServices, clock: Clock
) -> None:
    old = add_job(svc, "1")
    scene = sha256_file(BLEND)
    assert svc.blob_gc.missing([scene]) == []  # the new submission need not upload it
    clock.advance(CLAIM_GRACE_S - 1)  # e.g. a long upload of its other files
    svc.jobs.delete(old.id, alice(svc))  # the only job that used it
    assert svc.blobs.has(scene)
    job = svc.jobs.submit(submission({"s.blend": scene}), submitter="alice")
    assert svc.jobs.get(job.id).status == "queued"


def test_a_blob_a_submission_uploaded_survives_a_delete(svc: ServerServices, clock: Clock) -> None:
    old = add_job(svc, "1")
    scene = sha256_file(BLEND)
    size = asyncio.run(svc.blob_gc.upload(scene, chunks_of(BLEND)))  # sent without asking
    assert size == BLEND.stat().st_size
    svc.jobs.delete(old.id, alice(svc))
    assert svc.blobs.has(scene)
    svc.jobs.submit(submission({"s.blend": scene}), submitter="alice")


def test_after_the_grace_a_delete_frees_the_blob_and_what_nobody_made_a_job_of(
    svc: ServerServices, clock: Clock, tmp_path: Path
) -> None:
    old = add_job(svc, "1")
    scene = sha256_file(BLEND)
    assert svc.blob_gc.missing([scene]) == []
    abandoned_file = tmp_path / "texture.png"
    abandoned_file.write_bytes(b"uploaded by a submission that never created its job")
    abandoned = sha256_file(abandoned_file)
    asyncio.run(svc.blob_gc.upload(abandoned, chunks_of(abandoned_file)))
    later = add_job(svc, "1")
    svc.jobs.delete(later.id, alice(svc))  # within the grace: both claims keep their blobs
    assert svc.blobs.has(scene) and svc.blobs.has(abandoned)

    clock.advance(CLAIM_GRACE_S + 1)
    svc.jobs.delete(old.id, alice(svc))
    assert not svc.blobs.has(scene)
    assert not svc.blobs.has(abandoned)  # an expired claim with no job: freed too
    with pytest.raises(Unprocessable, match="never uploaded"):
        svc.jobs.submit(submission({"s.blend": scene}), submitter="alice")
    # Asked again, the Server says so, and the submission uploads it once more.
    assert svc.blob_gc.missing([scene]) == [scene]


def test_a_deleted_jobs_own_blobs_are_freed_at_once(svc: ServerServices, clock: Clock) -> None:
    job = add_job(svc, "1")  # its scene came without any submission asking (no claim)
    svc.jobs.delete(job.id, alice(svc))
    assert not svc.blobs.has(sha256_file(BLEND))


def test_submissions_racing_deletes_of_the_jobs_they_share_a_blob_with_all_succeed(
    svc: ServerServices,
) -> None:
    """Each round: a submission asks, uploads what is missing, creates its job; meanwhile
    the previous job, the only other user of the scene, is deleted."""
    scene = sha256_file(BLEND)
    user = alice(svc)
    created: list[str] = []
    failures: list[str] = []
    previous = add_job(svc, "1")
    for _ in range(25):
        go = threading.Barrier(2)

        def delete_previous(job_id: str = previous.id, go: threading.Barrier = go) -> None:
            go.wait()
            svc.jobs.delete(job_id, user)

        deleter = threading.Thread(target=delete_previous)
        deleter.start()
        go.wait()
        if svc.blob_gc.missing([scene]):
            asyncio.run(svc.blob_gc.upload(scene, chunks_of(BLEND)))
        deleter.join()  # the worst case: the delete has finished before the job is created
        try:
            previous = svc.jobs.submit(submission({"s.blend": scene}), submitter="alice")
            created.append(previous.id)
        except Unprocessable as exc:
            failures.append(str(exc))
            previous = add_job(svc, "1")
    assert failures == []
    assert len(created) == 25
