"""One frame over many machines, end to end with real Blender: a frame rendered as 4 tiles on
2 Workers and joined by the Server equals, bit for bit, the same frame rendered in one
process (Cycles, denoising off: the demo scene); the job's frames are the joined frame alone
and the tiles are gone; bad --tiles input is one sentence before anything is uploaded.
EXR tiles (OPEN_EXR, OPEN_EXR_MULTILAYER) are joined in float: every channel equal."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from farmkit import TestFarm
from flamenco import wire
from test_tile_join_exr import channels

pytestmark = pytest.mark.blender

ONE_PROCESS = """
import sys, bpy
bpy.ops.wm.open_mainfile(filepath=sys.argv[1])
scene = bpy.context.scene
scene.frame_set(int(sys.argv[3]))
scene.render.filepath = sys.argv[2]
bpy.ops.render.render(write_still=True)
"""


def one_process_render(scene: Path, frame: int, dest: Path) -> np.ndarray:
    """The frame as one Blender renders it alone (the bpy of this virtualenv)."""
    done = subprocess.run(
        [sys.executable, "-c", ONE_PROCESS, str(scene), str(dest), str(frame)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return np.asarray(Image.open(dest.with_suffix(".png")))


def test_a_frame_in_four_tiles_on_two_workers_equals_the_one_process_render(
    farm: TestFarm, demo_scene: Path, tmp_path: Path
) -> None:
    farm.start_server()
    farm.start_manager()
    farm.start_worker("w1")
    farm.start_worker("w2")

    for extra, sentence in [
        (("--frames", "3", "--tiles", "1"), "--tiles must be at least 2, got 1."),
        (("--frames", "3-4", "--tiles", "4"), "but the job has 2 frames"),
        (("--frames", "3", "--tiles", "4", "--chunk", "auto"), "cannot be combined with tiles"),
        # the scene's 96x54 frame, read from the .blend by the CLI (blendfile.scene_resolution)
        (("--frames", "3", "--tiles", "5185"), "--tiles 5185 is more than the 96x54 frame's"),
    ]:
        refused = farm.cli("submit", str(demo_scene), *extra)
        assert refused.returncode != 0
        assert sentence in refused.stderr, refused.stderr
    assert farm.api().call("GET", "/api/v1/jobs", wire.JobList).root == []  # nothing made

    done = farm.cli("submit", str(demo_scene), "--json", "--frames", "3", "--tiles", "4")
    assert done.returncode == 0, done.stderr
    job_id = str(json.loads(done.stdout)["id"])
    assert farm.wait_job(job_id).status == "completed", farm.logs()

    tasks = farm.tasks(job_id)
    assert sorted(t.name for t in tasks) == [f"render 3 tile {i}/4" for i in range(1, 5)]
    frames = farm.api().call("GET", f"/api/v1/jobs/{job_id}/frames", wire.FrameList).root
    assert [(f.frame, f.filename) for f in frames] == [(3, "frame_000003.png")]

    fetched = farm.cli("jobs", "download", job_id, str(tmp_path / "dl"))
    assert fetched.returncode == 0, fetched.stderr
    assert [p.name for p in (tmp_path / "dl").iterdir()] == ["frame_000003.png"]
    joined = np.asarray(Image.open(tmp_path / "dl" / "frame_000003.png"))
    alone = one_process_render(demo_scene, 3, tmp_path / "alone" / "frame")
    assert joined.shape == alone.shape
    assert np.array_equal(joined, alone), f"{int((joined != alone).sum())} values differ"
    assert not list(farm.root.rglob("*.tile-*-of-4")), "tiles left after the join"


ONE_PROCESS_AS = """
import sys, bpy
from flamenco.worker.blender_child import use_output_format
bpy.ops.wm.open_mainfile(filepath=sys.argv[1])
scene = bpy.context.scene
scene.frame_set(int(sys.argv[3]))
use_output_format(scene, sys.argv[4])  # as the Worker sets the job's format
scene.render.filepath = sys.argv[2]
bpy.ops.render.render(write_still=True)
"""


def test_exr_tiles_through_the_farm_join_in_float_to_the_one_process_frame(
    farm: TestFarm, demo_scene: Path, tmp_path: Path
) -> None:
    """Both EXR formats, one job each on one farm: the frame the Server joined equals the
    one-process render in every float channel of every layer, bit for bit."""
    farm.start_server()
    farm.start_manager()
    farm.start_worker("w1")
    farm.start_worker("w2")
    for fmt in ("OPEN_EXR", "OPEN_EXR_MULTILAYER"):
        done = farm.cli(
            "submit",
            str(demo_scene),
            "--json",
            "--frames",
            "2",
            "--tiles",
            "2",
            "--output-format",
            fmt,
        )
        assert done.returncode == 0, done.stderr
        job_id = str(json.loads(done.stdout)["id"])
        assert farm.wait_job(job_id).status == "completed", farm.logs()
        dest = tmp_path / fmt
        fetched = farm.cli("jobs", "download", job_id, str(dest / "dl"))
        assert fetched.returncode == 0, fetched.stderr
        assert [p.name for p in (dest / "dl").iterdir()] == ["frame_000002.exr"]
        alone = subprocess.run(
            [sys.executable, "-c", ONE_PROCESS_AS, str(demo_scene), str(dest / "alone"), "2", fmt],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert alone.returncode == 0, alone.stderr[-2000:]
        expected = channels(dest / "alone.exr")
        got = channels(dest / "dl" / "frame_000002.exr")
        assert sorted(got) == sorted(expected), fmt
        for name, value in expected.items():
            assert got[name] == value, f"{fmt} {name}: the joined float pixels differ"
