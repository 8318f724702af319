"""Preview videos, artifacts and thumbnails through the Server's services (SQLite, PostgreSQL)."""

from __future__ import annotations

import asyncio
import hashlib
import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from serverkit import BLEND, add_manager, alice, lease_sync, make_services, one_chunk, task_update

from exrkit import rgba, write_exr
from flamenco import wire
from flamenco.core.actions import JobAction
from flamenco.core.states import JobStatus, TaskStatus
from flamenco.errors import NotFound
from flamenco.frame_check import BadFrame
from flamenco.server.frame_views import frame_view
from flamenco.server.models import ManagerRow
from flamenco.server.services import ServerServices


@pytest.fixture(params=["sqlite", "postgres"])
def svc(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ServerServices]:
    yield from make_services(request, tmp_path)


def _preview_job(svc: ServerServices, frames: str) -> wire.Job:
    sub = wire.JobSubmission(
        name=f"preview {frames}",
        files={"s.blend": svc.blobs.put_file(BLEND)},
        settings={"blend": "s.blend", "frames": frames, "preview_video": True, "fps": 12},
    )
    return svc.jobs.submit(sub, submitter="alice")


def _png(size: tuple[int, int], colour: tuple[int, int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, "PNG")
    return out.getvalue()


def _frame(
    svc: ServerServices,
    manager: ManagerRow,
    task_id: str,
    frame: int,
    data: bytes,
    name: str | None = None,
) -> str:
    sha = hashlib.sha256(data).hexdigest()
    name = name or f"frame_{frame:06d}.png"
    asyncio.run(svc.jobs.receive_frame(manager.id, task_id, frame, name, sha, one_chunk(data)))
    return sha


def _artifact(
    svc: ServerServices, manager: ManagerRow, task_id: str, data: bytes, name: str = "preview.mp4"
) -> str:
    sha = hashlib.sha256(data).hexdigest()
    asyncio.run(svc.jobs.receive_artifact(manager.id, task_id, name, sha, one_chunk(data)))
    return sha


def _complete(svc: ServerServices, manager: ManagerRow, task_id: str) -> None:
    svc.leases.apply_updates(manager, [task_update(task_id, TaskStatus.COMPLETED, worker="w1")])


def test_the_preview_task_gets_the_rendered_frames_once_every_render_is_done(
    svc: ServerServices,
) -> None:
    site = add_manager(svc, "site")
    job = _preview_job(svc, "1-3")
    renders = lease_sync(svc, site, want=10).leases
    assert [lease.type for lease in renders] == ["blender-render"] * 3  # the preview waits
    shas = {}
    for lease in renders:
        (frame,) = lease.frames
        shas[frame] = _frame(svc, site, lease.task_id, frame, _png((600, 300), (frame * 60, 0, 0)))
        assert lease_sync(svc, site, want=10).leases == []
        _complete(svc, site, lease.task_id)

    (preview,) = lease_sync(svc, site, want=10).leases
    assert (preview.type, preview.name, preview.frames) == ("ffmpeg", "preview video", [1, 2, 3])
    assert preview.command["fps"] == 12
    assert preview.files == {
        f"frames/{frame}/frame_{frame:06d}.png": sha for frame, sha in shas.items()
    }
    assert all(svc.blobs.has(sha) for sha in preview.files.values())  # fetchable by hash
    assert svc.jobs.get(job.id).status == JobStatus.ACTIVE


def test_every_readable_frame_gets_a_small_jpeg_thumbnail(svc: ServerServices) -> None:
    site = add_manager(svc, "site")
    job = _preview_job(svc, "1-3")
    first, second, third = lease_sync(svc, site, want=3).leases
    _frame(svc, site, first.task_id, 1, _png((600, 300), (200, 10, 10)))
    # A DPX file: a frame (its content is not read on arrival), but Pillow cannot read it.
    dpx = b"SDPX a DPX file Pillow cannot read"
    _frame(svc, site, second.task_id, 2, dpx, name="frame_000002.dpx")
    _frame(svc, site, third.task_id, 3, _png((90, 400), (10, 10, 200)))

    with Image.open(svc.jobs.thumbnail(job.id, 1)) as thumb:
        assert (thumb.format, thumb.size) == ("JPEG", (256, 128))
        assert thumb.getpixel((128, 64))[0] > 150
    with Image.open(svc.jobs.thumbnail(job.id, 3)) as thumb:
        assert (thumb.format, thumb.size) == ("JPEG", (58, 256))
    with pytest.raises(NotFound, match="no thumbnail of frame 2"):
        svc.jobs.thumbnail(job.id, 2)
    # The unreadable frame is still a frame of the job, only without a thumbnail.
    assert [f.frame for f in svc.jobs.frames(job.id)] == [1, 2, 3]


def test_an_exr_frame_is_kept_as_it_is_and_its_thumbnail_is_its_beauty(
    svc: ServerServices, tmp_path: Path
) -> None:
    site = add_manager(svc, "site")
    job = _preview_job(svc, "1")
    (lease,) = lease_sync(svc, site, want=1).leases
    exr = write_exr(
        tmp_path / "frame_000001.exr",
        {
            "ViewLayer.Combined": rgba(100, 300, (0.0, 0.18, 1.0)),
            "ViewLayer.Depth.Z": np.full((100, 300), 4.0, np.float32),
        },
    )
    data = exr.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    asyncio.run(svc.jobs.receive_frame(site.id, lease.task_id, 1, exr.name, sha, one_chunk(data)))

    (info,) = svc.jobs.frames(job.id)
    assert (info.filename, info.width, info.height, info.sha256) == (exr.name, 300, 100, sha)
    stored, name = svc.jobs.frame_file(job.id, 1)
    assert name == exr.name and stored.read_bytes() == data  # byte for byte, not re-encoded
    placed = Path(svc.jobs.get(job.id).output_dir) / exr.name
    assert placed.read_bytes() == data
    with Image.open(svc.jobs.thumbnail(job.id, 1)) as thumb:
        assert (thumb.format, thumb.size) == ("JPEG", (256, 85))
        assert all(
            abs(a - b) <= 3 for a, b in zip(thumb.getpixel((128, 42)), (0, 118, 255), strict=True)
        )


def test_the_viewer_gets_browser_images_as_they_are_and_a_jpeg_of_anything_else(
    svc: ServerServices, tmp_path: Path
) -> None:
    site = add_manager(svc, "site")
    job = _preview_job(svc, "1-3")
    first, second, third = lease_sync(svc, site, want=3).leases
    png = _png((40, 20), (0, 200, 0))
    _frame(svc, site, first.task_id, 1, png)
    exr = write_exr(tmp_path / "f.exr", {"ViewLayer.Combined": rgba(30, 60, (1.0, 0.0, 0.0))})
    data = exr.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    name = "frame_000002.exr"
    asyncio.run(svc.jobs.receive_frame(site.id, second.task_id, 2, name, sha, one_chunk(data)))
    _frame(svc, site, third.task_id, 3, b"SDPX not for browsers", name="frame_000003.dpx")
    # A broken EXR never becomes a frame (flamenco.frame_check): refused as it arrives.
    broken = b"v/1\x01 cut short"
    sha = hashlib.sha256(broken).hexdigest()
    with pytest.raises(BadFrame, match=r"^Frame 3 \(frame_000003.exr\) does not decode as EXR"):
        asyncio.run(
            svc.jobs.receive_frame(
                site.id, third.task_id, 3, "frame_000003.exr", sha, one_chunk(broken)
            )
        )
    assert not svc.blobs.has(sha)

    path, media_type = frame_view(svc.jobs, job.id, 1)
    assert (media_type, path.read_bytes()) == ("image/png", png)
    path, media_type = frame_view(svc.jobs, job.id, 2)
    assert media_type == "image/jpeg"
    with Image.open(path) as view:
        assert (view.format, view.size) == ("JPEG", (60, 30))  # full size
        assert all(
            abs(a - b) <= 3 for a, b in zip(view.getpixel((30, 15)), (255, 0, 0), strict=True)
        )
    assert frame_view(svc.jobs, job.id, 2) == (path, "image/jpeg")  # made once
    with pytest.raises(NotFound, match=r"Frame 3 of job .* cannot be shown as a picture"):
        frame_view(svc.jobs, job.id, 3)
    with pytest.raises(NotFound, match="no rendered frame 4"):
        frame_view(svc.jobs, job.id, 4)


def test_a_requeue_that_renders_another_format_keeps_the_frames_already_rendered(
    svc: ServerServices, tmp_path: Path
) -> None:
    site = add_manager(svc, "site")
    job = _preview_job(svc, "1")
    (lease,) = lease_sync(svc, site, want=1).leases
    exr = write_exr(tmp_path / "f.exr", {"RGBA": rgba(10, 20, (0.5, 0.5, 0.5))}).read_bytes()
    exr_sha = hashlib.sha256(exr).hexdigest()
    asyncio.run(
        svc.jobs.receive_frame(
            site.id, lease.task_id, 1, "frame_000001.exr", exr_sha, one_chunk(exr)
        )
    )
    _complete(svc, site, lease.task_id)
    svc.jobs.act(job.id, JobAction.REQUEUE, alice(svc))
    (again,) = [r for r in lease_sync(svc, site, want=5).leases if r.type == "blender-render"]
    _frame(svc, site, again.task_id, 1, _png((20, 10), (0, 0, 200)))

    # The job's frame is the new render; the EXR stays in the output folder and its blob.
    assert [f.filename for f in svc.jobs.frames(job.id)] == ["frame_000001.png"]
    output_dir = Path(svc.jobs.get(job.id).output_dir)
    assert sorted(p.name for p in output_dir.iterdir()) == [
        "frame_000001.exr",
        "frame_000001.png",
    ]
    assert (output_dir / "frame_000001.exr").read_bytes() == exr
    assert svc.blobs.has(exr_sha)


def test_deleting_a_job_removes_its_thumbnails_artifacts_and_unshared_blobs(
    svc: ServerServices,
) -> None:
    site = add_manager(svc, "site")
    jobs = [_preview_job(svc, "1"), _preview_job(svc, "1")]
    video = b"the same preview video bytes for both jobs"
    renders = lease_sync(svc, site, want=5).leases
    assert sorted(r.job_id for r in renders) == sorted(j.id for j in jobs)
    for render in renders:
        _frame(svc, site, render.task_id, 1, _png((40, 20), (0, 200, 0)))
        _complete(svc, site, render.task_id)
    previews = lease_sync(svc, site, want=5).leases
    assert sorted(p.job_id for p in previews) == sorted(j.id for j in jobs)
    for lease in previews:
        sha = _artifact(svc, site, lease.task_id, video)
        _complete(svc, site, lease.task_id)
    notes = b"a second artifact, of the first job only"
    own = _artifact(svc, site, previews[0].task_id, notes, "notes.txt")
    first = next(j for j in jobs if j.id == previews[0].job_id)
    second = next(j for j in jobs if j.id != first.id)
    listed = svc.jobs.artifacts(first.id)
    assert [(a.name, a.sha256, a.size) for a in listed] == [
        ("notes.txt", own, len(notes)),
        ("preview.mp4", sha, len(video)),
    ]
    assert (Path(first.output_dir) / "preview.mp4").read_bytes() == video
    assert (Path(first.output_dir) / "notes.txt").read_bytes() == notes
    assert svc.jobs.artifact_file(second.id, "preview.mp4").read_bytes() == video
    thumbnails = svc.jobs.thumbnail(first.id, 1).parent

    svc.jobs.delete(first.id, alice(svc))
    assert not thumbnails.exists()
    assert not Path(first.output_dir).exists()
    assert not svc.blobs.has(own)
    assert svc.blobs.has(sha)  # the other job's preview is the same blob
    assert svc.jobs.artifact_file(second.id, "preview.mp4").read_bytes() == video
    with pytest.raises(NotFound):
        svc.jobs.artifacts(first.id)

    svc.jobs.delete(second.id, alice(svc))
    assert not svc.blobs.has(sha)
