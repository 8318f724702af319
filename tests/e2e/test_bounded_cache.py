"""Bounded disks through a real farm: a 40 MB cache, ten jobs of 15 MB of textures each.

Server, Manager and Worker are real processes with real Blender. Each job has its own three
textures of incompressible random pixels (5 MB each), so nothing is shared between jobs but
the scene. The Manager's and the Worker's cache folders are measured all along, from before
the first submission until every job is done: they never pass 40 MB, and every job completes.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import threading
from pathlib import Path

import pytest
from PIL import Image

from farmkit import TestFarm
from flamenco.worker.blender import BlenderInstall, child_env

pytestmark = pytest.mark.blender

SCENE_SCRIPT = Path(__file__).parents[1] / "scenes" / "textures_scene.py"
CAP = 40 * 1000**2
JOBS = 10
TEXTURES = 3
SIDE = 1290  # 1290 x 1290 RGB of random pixels: 5 MB a texture, 15 MB a job


def _random_texture(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = os.urandom(SIDE * SIDE * 3)
    Image.frombytes("RGB", (SIDE, SIDE), pixels).save(path, compress_level=1)


def _projects(install: BlenderInstall, root: Path) -> list[Path]:
    """Ten project folders, each with the same scene and three textures of its own."""
    scenes = []
    for job in range(JOBS):
        project = root / f"project-{job}"
        for t in range(TEXTURES):
            _random_texture(project / "textures" / f"t{t}.png")
        scenes.append(project / "shot.blend")
    textures = [str(root / "project-0" / "textures" / f"t{t}.png") for t in range(TEXTURES)]
    argv = install.script_argv(SCENE_SCRIPT, [str(scenes[0]), *textures])
    done = subprocess.run(
        argv, env=child_env(root / "user"), capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0 and scenes[0].is_file(), done.stdout + done.stderr
    for scene in scenes[1:]:
        shutil.copyfile(scenes[0], scene)  # its textures: the same relative paths, other pixels
    return scenes


def _bytes_in(folder: Path) -> int:
    """The bytes the folder takes on disk: a file under two names (an upload's hard-linked
    attempt, blobs.py) is counted once, as `du` does."""
    files: dict[tuple[int, int], int] = {}
    for dirpath, _, names in os.walk(folder):
        for name in names:
            with contextlib.suppress(FileNotFoundError):  # evicted while we counted
                info = os.lstat(os.path.join(dirpath, name))
                files[(info.st_dev, info.st_ino)] = info.st_size
    return sum(files.values())


class CacheWatch:
    """Samples the caches' bytes on a thread from start to stop; keeps the largest."""

    def __init__(self, folders: dict[str, Path]) -> None:
        self.folders = folders
        self.largest = dict.fromkeys(folders, 0)
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for label, folder in self.folders.items():
                self.largest[label] = max(self.largest[label], _bytes_in(folder))
            self.samples += 1
            self._stop.wait(0.02)

    def __enter__(self) -> CacheWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def test_ten_jobs_of_15_mb_through_40_mb_caches_all_complete_within_the_bound(
    farm: TestFarm, blender_install: BlenderInstall, tmp_path: Path
) -> None:
    scenes = _projects(blender_install, tmp_path / "src")
    farm.start_server()
    farm.start_manager(env={"FLAMENCO_MANAGER_CACHE_SIZE": "40MB"})
    worker = farm.start_worker("w1", args=["--cache-size", "40MB"])
    caches = {
        "Manager": farm.root / "manager-local" / "blobs",
        "Worker": farm.root / "w1" / "cache",
    }
    with CacheWatch(caches) as watch:
        job_ids = []
        for scene in scenes:
            submitted = farm.cli("submit", str(scene), "--frames", "1", "--json")
            assert submitted.returncode == 0, submitted.stderr
            job_ids.append(json.loads(submitted.stdout)["id"])
        for job_id in job_ids:
            job = farm.wait_job(job_id, timeout=600)
            assert job.status == "completed", farm.logs()
            assert job.frames_done == 1

    assert watch.samples > 100, "the caches were measured all along"
    for label, largest in watch.largest.items():
        assert largest <= CAP, f"the {label}'s cache reached {largest} bytes, over {CAP}"
        assert _bytes_in(caches[label]) <= CAP
    # The bound was needed and did its work: all of it went through, most of it went again.
    server_blobs = _bytes_in(farm.root / "server" / "blobs")
    assert server_blobs > JOBS * TEXTURES * SIDE * SIDE * 3
    assert all(largest > 15 * 1000**2 for largest in watch.largest.values())
    assert "least recently used blobs evicted" in worker.output()
    # Blender children's temp folders: one per living Blender at most (warm + standby).
    assert len(list((farm.root / "w1" / "blender-tmp").iterdir())) <= 2
