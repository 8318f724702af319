"""A job's preview video and frame thumbnails, made by a real farm: Blender, then FFmpeg."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import imageio_ffmpeg
import pytest
from PIL import Image

from farmkit import DEMO_FRAMES, DEMO_RESOLUTION, TestFarm
from flamenco import wire

pytestmark = pytest.mark.blender


def test_a_job_with_a_preview_video_gets_an_mp4_of_all_its_frames_and_thumbnails(
    farm: TestFarm, demo_scene: Path, tmp_path: Path
) -> None:
    farm.start_server()
    farm.start_manager()
    farm.start_worker("worker-a")
    farm.start_worker("worker-b")

    done = farm.cli(
        "submit",
        str(demo_scene),
        "--frames",
        f"1-{DEMO_FRAMES}",
        "--chunk",
        "3",
        "--preview-video",
        "--wait",
        "--json",
    )
    assert done.returncode == 0, done.stderr + farm.logs()
    job = wire.Job.model_validate_json(done.stdout)
    assert job.status == "completed" and job.frames_done == DEMO_FRAMES
    assert job.settings["preview_video"] is True

    *renders, preview = farm.tasks(job.id)
    assert [t.frames for t in renders] == [[1, 2, 3], [4, 5, 6], [7, 8, 9], [10]]
    assert {t.type for t in renders} == {"blender-render"}
    assert (preview.type, preview.name, preview.status) == ("ffmpeg", "preview video", "completed")
    assert preview.frames == list(range(1, DEMO_FRAMES + 1))

    # The preview task started only after every render task had completed.
    history = farm.api().call("GET", f"/api/v1/jobs/{job.id}/history", wire.TaskEventList).root
    applied = [e for e in history if e.outcome == "applied"]
    (started,) = [e.at for e in applied if e.task_id == preview.id and e.status == "active"]
    completions = {e.task_id: e.at for e in applied if e.status == "completed"}
    assert set(completions) == {t.id for t in [*renders, preview]}, history
    assert all(completions[t.id] < started for t in renders), history

    # Downloaded with the frames, and kept in the job's output folder on the Server.
    dest = tmp_path / "download"
    fetched = farm.cli("jobs", "download", job.id, str(dest))
    assert fetched.returncode == 0, fetched.stderr
    assert "preview.mp4" in fetched.stderr
    video = dest / "preview.mp4"
    assert video.is_file()
    on_server = Path(job.output_dir) / "preview.mp4"
    assert on_server.read_bytes() == video.read_bytes()
    assert len(sorted(dest.glob("frame_*.png"))) == DEMO_FRAMES

    count, seconds = imageio_ffmpeg.count_frames_and_secs(str(video))
    assert count == DEMO_FRAMES
    assert seconds == pytest.approx(DEMO_FRAMES / 24, abs=0.05)  # the job's default fps
    reader = imageio_ffmpeg.read_frames(str(video))
    assert tuple(next(reader)["size"]) == DEMO_RESOLUTION
    reader.close()

    (artifact,) = farm.api().call("GET", f"/api/v1/jobs/{job.id}/artifacts", wire.ArtifactList).root
    assert (artifact.name, artifact.task_id) == ("preview.mp4", preview.id)
    assert artifact.sha256 == hashlib.sha256(video.read_bytes()).hexdigest()
    log = farm.api().request("GET", f"/api/v1/jobs/{job.id}/tasks/{preview.id}/log").text
    assert f"encoding {DEMO_FRAMES} frames" in log, log

    # Every frame has a thumbnail for the Dashboard: a JPEG whose longest side is at most 256.
    api = farm.api()
    for frame in range(1, DEMO_FRAMES + 1):
        response = api.request("GET", f"/api/v1/jobs/{job.id}/frames/{frame}/thumbnail")
        assert response.headers["content-type"] == "image/jpeg"
        with Image.open(io.BytesIO(response.content)) as thumb:
            assert thumb.format == "JPEG"
            assert max(thumb.size) <= 256
            assert thumb.size == DEMO_RESOLUTION  # smaller frames are not blown up

    # Deleting the job takes its video and thumbnails along.
    assert farm.cli("jobs", "delete", job.id).returncode == 0
    assert not on_server.exists()
    assert not (farm.root / "server" / "thumbnails" / job.id).exists()
    assert not (farm.root / "server" / "blobs" / artifact.sha256[:2] / artifact.sha256).exists()
    listed = farm.cli("jobs", "list", "--json")
    assert json.loads(listed.stdout) == []
