"""The artifacts of the jobs a job waits for are files of that job (bake, then render, with no
shared disk), through the Server's services on SQLite and PostgreSQL; a blender-script job's
script must be among its files."""

from __future__ import annotations

import asyncio
import hashlib
import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image
from serverkit import BLEND, add_job, add_manager, lease_sync, make_services, one_chunk, task_update

from flamenco import wire
from flamenco.core.states import JobStatus, TaskStatus
from flamenco.errors import Unprocessable
from flamenco.server.models import ManagerRow
from flamenco.server.services import ServerServices

SCRIPT = b"FLAMENCO_OUTPUTS.append('cache/fluid_0001.vdb')\n"


@pytest.fixture(params=["sqlite", "postgres"])
def svc(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ServerServices]:
    yield from make_services(request, tmp_path)


def bake_job(svc: ServerServices, files: dict[str, str] | None = None) -> wire.Job:
    scene = svc.blobs.put_file(BLEND)
    script = asyncio.run(
        svc.blobs.put_stream(one_chunk(SCRIPT), hashlib.sha256(SCRIPT).hexdigest())
    )
    sub = wire.JobSubmission(
        name="bake",
        type="blender-script",
        files={"s.blend": scene, "scripts/bake.py": script} if files is None else files,
        settings={"blend": "s.blend", "script": "scripts/bake.py", "args": ["--fast"]},
    )
    return svc.jobs.submit(sub, submitter="alice")


def render_after(svc: ServerServices, after: list[str]) -> wire.Job:
    sub = wire.JobSubmission(
        name="render",
        files={"s.blend": svc.blobs.put_file(BLEND)},
        settings={"blend": "s.blend", "frames": "1-2"},
        after=after,
    )
    return svc.jobs.submit(sub, submitter="alice")


def store_artifact(
    svc: ServerServices, manager: ManagerRow, task_id: str, name: str, data: bytes
) -> str:
    sha = hashlib.sha256(data).hexdigest()
    asyncio.run(svc.jobs.receive_artifact(manager.id, task_id, name, sha, one_chunk(data)))
    return sha


def test_a_render_after_a_bake_gets_the_bakes_files(svc: ServerServices) -> None:
    manager = add_manager(svc, "site")
    bake = bake_job(svc)
    render = render_after(svc, [bake.id])
    alone = add_job(svc, "1")

    leases = lease_sync(svc, manager, want=10).leases
    (script_lease,) = [lease for lease in leases if lease.job_id == bake.id]
    assert (script_lease.type, script_lease.frames) == ("blender-script", [])
    assert script_lease.command == {
        "blend": "s.blend",
        "script": "scripts/bake.py",
        "args": ["--fast"],
        "frame": None,
    }
    assert set(script_lease.files) == {"s.blend", "scripts/bake.py"}
    cache = store_artifact(svc, manager, script_lease.task_id, "cache/fluid_0001.vdb", b"vdb 1")
    store_artifact(svc, manager, script_lease.task_id, "cache/fluid_0001.vdb", b"vdb again")
    newest = hashlib.sha256(b"vdb again").hexdigest()
    assert newest != cache
    svc.leases.apply_updates(
        manager, [task_update(script_lease.task_id, TaskStatus.COMPLETED, worker="w1")]
    )
    assert svc.jobs.get(bake.id).status == JobStatus.COMPLETED
    assert svc.jobs.get(bake.id).frames_total == 0

    renders = lease_sync(svc, manager, want=10).leases
    assert {lease.job_id for lease in renders} == {render.id}
    for lease in renders:
        assert lease.type == "blender-render"
        assert lease.files == {
            "s.blend": hashlib.sha256(BLEND.read_bytes()).hexdigest(),
            "cache/fluid_0001.vdb": newest,  # the one stored last
        }
    (alone_lease,) = [lease for lease in leases if lease.job_id == alone.id]
    assert set(alone_lease.files) == {"s.blend"}  # it waited for nothing


def test_a_script_that_is_not_among_the_files_is_refused(svc: ServerServices) -> None:
    with pytest.raises(Unprocessable) as refused:
        bake_job(svc, files={"s.blend": svc.blobs.put_file(BLEND)})
    assert str(refused.value) == (
        "The file of setting 'script' 'scripts/bake.py' is not among the job's files."
    )


def png(frame: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 8), (frame * 40, 0, 0)).save(out, "PNG")
    return out.getvalue()


def video_after(svc: ServerServices, after: str, settings: dict) -> wire.Job:
    sub = wire.JobSubmission(
        name="video", type="ffmpeg", files={}, settings=settings, after=[after]
    )
    return svc.jobs.submit(sub, submitter="alice")


def test_a_video_job_encodes_the_frames_of_the_job_it_waits_for(svc: ServerServices) -> None:
    manager = add_manager(svc, "site")
    render = add_job(svc, "1-2")
    every, second = video_after(svc, render.id, {}), video_after(svc, render.id, {"frames": "2"})
    assert (every.frames_total, svc.jobs.get(every.id).status) == (0, JobStatus.QUEUED)
    shas = {}
    for lease in lease_sync(svc, manager, want=10).leases:
        assert lease.job_id == render.id  # the videos wait
        (frame,) = lease.frames
        data = png(frame)
        shas[frame] = hashlib.sha256(data).hexdigest()
        name = f"frame_{frame:06d}.png"
        asyncio.run(
            svc.jobs.receive_frame(
                manager.id, lease.task_id, frame, name, shas[frame], one_chunk(data)
            )
        )
        svc.leases.apply_updates(
            manager, [task_update(lease.task_id, TaskStatus.COMPLETED, worker="w1")]
        )
    videos = {lease.job_id: lease for lease in lease_sync(svc, manager, want=10).leases}
    assert videos[every.id].type == "ffmpeg"
    assert videos[every.id].command == {"frames": [], "fps": 24}
    assert videos[every.id].files == {
        "frames/1/frame_000001.png": shas[1],
        "frames/2/frame_000002.png": shas[2],
    }
    assert videos[second.id].files == {"frames/2/frame_000002.png": shas[2]}
