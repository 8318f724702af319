"""The ffmpeg job type through a real farm: a video job without a scene, waiting for a render
job, encodes that job's frames (only those it names, when it names some) into preview.mp4."""

from __future__ import annotations

import json
from pathlib import Path

import imageio_ffmpeg
import pytest

from farmkit import DEMO_RESOLUTION, TestFarm
from flamenco import wire

pytestmark = pytest.mark.blender


def test_a_video_job_encodes_the_frames_of_the_render_it_waits_for(
    farm: TestFarm, demo_scene: Path, tmp_path: Path
) -> None:
    farm.start_server()
    farm.start_manager()
    farm.start_worker("w1")
    render = farm.cli("submit", str(demo_scene), "--frames", "1-4", "--json")
    assert render.returncode == 0, render.stderr
    render_id = json.loads(render.stdout)["id"]
    videos = {}
    for frames in ("", "2-3"):
        chosen = ["--set", f"frames={frames}"] if frames else []
        made = farm.cli(
            "submit", "--type", "ffmpeg", "--after", render_id, "--set", "fps=12", *chosen,
            "--json",
        )  # fmt: skip
        assert made.returncode == 0, made.stderr
        videos[frames] = json.loads(made.stdout)["id"]

    assert farm.wait_job(render_id).status == "completed", farm.logs()
    for frames, job_id in videos.items():
        job = farm.wait_job(job_id)
        assert (job.status, job.frames_total) == ("completed", 0), farm.logs()
        (artifact,) = (
            farm.api().call("GET", f"/api/v1/jobs/{job_id}/artifacts", wire.ArtifactList).root
        )
        assert artifact.name == "preview.mp4"
        video = tmp_path / f"{job_id}.mp4"
        video.write_bytes(
            farm.api().request("GET", f"/api/v1/jobs/{job_id}/artifacts/preview.mp4").content
        )
        count, seconds = imageio_ffmpeg.count_frames_and_secs(str(video))
        expected = 2 if frames else 4
        assert count == expected
        assert seconds == pytest.approx(expected / 12, abs=0.05)
        reader = imageio_ffmpeg.read_frames(str(video))
        assert tuple(next(reader)["size"]) == DEMO_RESOLUTION
        reader.close()
