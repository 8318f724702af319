"""The Server's writes of frames and artifacts into a job's output folder (SQLite, PostgreSQL).

The file goes in under a temporary name of the Server's own and is renamed into place; its
row is committed only once it is there; an OSError is answered with one sentence and leaves
neither a row nor a stray file behind.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image
from serverkit import add_job, add_manager, lease_sync, make_services, one_chunk
from sqlalchemy import update

from flamenco import wire
from flamenco.errors import FlamencoError
from flamenco.server.models import JobRow, ManagerRow
from flamenco.server.services import ServerServices

PATH_MAX = 4096  # Linux: a path this long or longer is refused whatever its parts


@pytest.fixture(params=["sqlite", "postgres"])
def svc(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ServerServices]:
    yield from make_services(request, tmp_path)


def _png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (32, 16), (200, 40, 0)).save(out, "PNG")
    return out.getvalue()


def _leased_job(svc: ServerServices) -> tuple[ManagerRow, wire.Job, wire.Lease]:
    site = add_manager(svc, "site")
    job = add_job(svc, "1")
    (lease,) = lease_sync(svc, site, want=1).leases
    return site, job, lease


def _send_frame(
    svc: ServerServices, site: ManagerRow, lease: wire.Lease, name: str
) -> wire.FrameInfo:
    data = _png()
    sha = hashlib.sha256(data).hexdigest()
    frame = lease.frames[0]
    return asyncio.run(
        svc.jobs.receive_frame(site.id, lease.task_id, frame, name, sha, one_chunk(data))
    )


def _send_artifact(svc: ServerServices, site: ManagerRow, lease: wire.Lease, name: str) -> None:
    data = b"not really a video"
    sha = hashlib.sha256(data).hexdigest()
    asyncio.run(svc.jobs.receive_artifact(site.id, lease.task_id, name, sha, one_chunk(data)))


def _move_output_dir(svc: ServerServices, job_id: str, output_dir: Path) -> None:
    """As a job created by an earlier Server, or on a Server whose data folder is elsewhere."""
    with svc.jobs.sessions.begin() as s:
        s.execute(update(JobRow).where(JobRow.id == job_id).values(output_dir=str(output_dir)))


def _deep_folder(root: Path, length: int) -> Path:
    """A folder whose path is `length` characters long, of parts a file system takes."""
    folder = root
    while len(str(folder)) < length - 201:
        folder = folder / ("d" * 200)
    return folder / ("e" * (length - len(str(folder)) - 1))


def test_a_frame_name_that_just_fits_the_file_system_is_written(svc: ServerServices) -> None:
    """255 bytes is what the file system takes; no suffix of the Server's may push it over."""
    site, job, lease = _leased_job(svc)
    name = "n" * 244 + "_000001.png"
    assert len(name.encode()) == 255
    info = _send_frame(svc, site, lease, name)
    assert info.filename == name
    assert sorted(p.name for p in Path(job.output_dir).iterdir()) == [name]
    assert svc.jobs.get(job.id).frames_done == 1


def test_a_name_the_file_system_refuses_is_a_422_with_a_sentence_and_records_nothing(
    svc: ServerServices, tmp_path: Path
) -> None:
    """The job's output folder is deep enough that the folder and a short temporary name fit
    in PATH_MAX, but not the folder and the frame's long name."""
    site, job, lease = _leased_job(svc)
    name = "n" * 189 + "_000001.png"
    output_dir = _deep_folder(tmp_path / "deep", PATH_MAX - 100)
    _move_output_dir(svc, job.id, output_dir)

    with pytest.raises(FlamencoError) as refused:
        _send_frame(svc, site, lease, name)
    assert refused.value.status_code == 422
    message = refused.value.message
    assert message.startswith("Frame 1 ('nnnn") and f"of job {job.id}" in message
    assert "cannot be written: the file system refuses its name (File name too long)." in message
    assert "\n" not in message
    assert svc.jobs.get(job.id).frames_done == 0
    assert svc.jobs.frames(job.id) == []
    assert list(output_dir.iterdir()) == []  # no temporary file left behind

    with pytest.raises(FlamencoError) as refused:
        _send_artifact(svc, site, lease, "a" * 120 + ".mp4")
    assert refused.value.status_code == 422
    assert svc.jobs.artifacts(job.id) == []
    assert list(output_dir.iterdir()) == []


def test_an_output_folder_that_cannot_be_made_is_a_500_with_a_sentence_and_records_nothing(
    svc: ServerServices,
) -> None:
    site, job, lease = _leased_job(svc)
    output_dir = Path(job.output_dir)
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    output_dir.write_text("a file where the job's folder should be")

    with pytest.raises(FlamencoError) as refused:
        _send_frame(svc, site, lease, "frame_000001.png")
    assert refused.value.status_code == 500
    assert refused.value.message == (
        f"Frame 1 ('frame_000001.png') of job {job.id} cannot be written (File exists)."
    )
    assert svc.jobs.get(job.id).frames_done == 0
    assert svc.jobs.frames(job.id) == []
