"""A Worker whose disk is full fails the task with "no space left on device", and another
Worker renders it. Real processes; the full Worker's data folder is a real 8 MB tmpfs and the
job's texture is 12 MB of random pixels, so fetching it fills that disk."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from PIL import Image

from diskkit import tiny_disk
from farmkit import TestFarm, wait_until
from flamenco.worker.blender import BlenderInstall, child_env

pytestmark = pytest.mark.blender

SCENE_SCRIPT = Path(__file__).parents[1] / "scenes" / "textures_scene.py"
SIDE = 2000  # 2000 x 2000 RGB of random pixels: 12 MB


def _scene_with_a_big_texture(install: BlenderInstall, root: Path) -> Path:
    texture = root / "textures" / "big.png"
    texture.parent.mkdir(parents=True)
    Image.frombytes("RGB", (SIDE, SIDE), os.urandom(SIDE * SIDE * 3)).save(
        texture, compress_level=1
    )
    scene = root / "shot.blend"
    argv = install.script_argv(SCENE_SCRIPT, [str(scene), str(texture)])
    done = subprocess.run(
        argv, env=child_env(root / "user"), capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0 and scene.is_file(), done.stdout + done.stderr
    return scene


def test_a_full_disk_fails_the_task_saying_so_and_another_worker_renders_it(
    farm: TestFarm, blender_install: BlenderInstall, tmp_path: Path
) -> None:
    scene = _scene_with_a_big_texture(blender_install, tmp_path / "src")
    # Enough tries that the full Worker's failures (it is kept off the job after three)
    # cannot fail the task before the other Worker has joined.
    farm.start_server(env={"FLAMENCO_SERVER_MAX_TASK_FAILURES": "10"})
    farm.start_manager()
    with tiny_disk(farm.root / "full", "8m"):
        full = farm.start_worker("full")
        submitted = farm.cli("submit", str(scene), "--frames", "1", "--json")
        assert submitted.returncode == 0, submitted.stderr
        job_id = json.loads(submitted.stdout)["id"]

        def failed_for_want_of_space() -> str | None:
            error = farm.job(job_id).last_error or ""
            return error if "no space left on device" in error else None

        error = wait_until(failed_for_want_of_space, 120, "the full Worker's failure")
        assert error.startswith("The Worker's disk is full: no space left on device")
        assert farm.job(job_id).status != "failed"  # the machine's fault: the job goes on

        farm.start_worker("roomy")
        job = farm.wait_job(job_id)
        assert job.status == "completed", farm.logs()
        (task,) = farm.tasks(job_id)
        assert task.worker == "roomy" and task.failure_count >= 1
        # The full disk holds no half-written blob, and the Worker still runs.
        assert full.alive()
        leftovers = list((farm.root / "full" / "cache" / "tmp").iterdir())
        assert leftovers == []
        full.stop()
