"""Job files travel with the job: no shared disk between the submitter and the Workers."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image

from farmkit import TestFarm
from flamenco.worker.blender import BlenderInstall, child_env

pytestmark = pytest.mark.blender

SCENE_SCRIPT = Path(__file__).parents[1] / "scenes" / "deps_scene.py"
TEXTURE_RGB = (40, 200, 60)


def build_scene_with_dependencies(
    install: BlenderInstall, root: Path, texture_at: str = "project/textures/green.png"
) -> Path:
    """project/scenes/shot.blend uses project/textures/green.png (or `texture_at`) and
    elsewhere/lib.blend."""
    texture = root / texture_at
    library = root / "elsewhere" / "libs" / "lib.blend"
    scene = root / "project" / "scenes" / "shot.blend"
    for path in (texture, library, scene):
        path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), TEXTURE_RGB).save(texture)
    argv = install.script_argv(SCENE_SCRIPT, [str(texture), str(library), str(scene)])
    done = subprocess.run(
        argv, env=child_env(root / "user"), capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0 and scene.is_file(), done.stdout + done.stderr
    return scene


def _close(pixel: tuple[int, ...], expected: tuple[int, int, int], tolerance: int = 6) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(pixel[:3], expected, strict=True))


def test_texture_and_linked_library_arrive_after_the_originals_are_gone(
    farm: TestFarm, blender_install: BlenderInstall, tmp_path: Path
) -> None:
    scene = build_scene_with_dependencies(blender_install, tmp_path / "src")
    farm.start_server()
    farm.start_manager()
    farm.start_worker("w1")
    submitted = farm.cli("submit", str(scene), "--frames", "1-2", "--json")
    assert submitted.returncode == 0, submitted.stderr
    job_id = json.loads(submitted.stdout)["id"]
    # The submitter's files disappear: only what travelled with the job is left.
    shutil.move(tmp_path / "src", tmp_path / "moved-away")

    assert farm.wait_job(job_id).status == "completed", farm.logs()
    fetched = farm.cli("jobs", "download", job_id, str(tmp_path / "frames"))
    assert fetched.returncode == 0, fetched.stderr
    for frame in sorted((tmp_path / "frames").glob("*.png")):
        image = Image.open(frame).convert("RGB")
        assert image.size == (64, 32)
        assert _close(image.getpixel((10, 16)), TEXTURE_RGB), "the texture is missing"
        assert _close(image.getpixel((40, 16)), (0, 0, 255)), "the linked cube is missing"


def test_missing_dependencies_stop_the_submission_unless_allowed(
    farm: TestFarm, blender_install: BlenderInstall, tmp_path: Path
) -> None:
    scene = build_scene_with_dependencies(blender_install, tmp_path / "src")
    (tmp_path / "src" / "project" / "textures" / "green.png").unlink()
    farm.start_server()

    refused = farm.cli("submit", str(scene), "--frames", "1")
    assert refused.returncode != 0
    assert "missing" in refused.stderr and "green.png" in refused.stderr
    assert "--allow-missing" in refused.stderr
    assert farm.cli("jobs", "list", "--json").stdout.strip() == "[]"

    allowed = farm.cli("submit", str(scene), "--frames", "1", "--allow-missing", "--json")
    assert allowed.returncode == 0, allowed.stderr
    assert "green.png" in allowed.stderr


def test_a_resubmission_uploads_only_what_changed(
    farm: TestFarm, blender_install: BlenderInstall, tmp_path: Path
) -> None:
    scene = build_scene_with_dependencies(blender_install, tmp_path / "src")
    farm.start_server()
    first = farm.cli("submit", str(scene), "--frames", "1", "--json")
    assert first.returncode == 0, first.stderr
    blobs = farm.root / "server" / "blobs"
    stored = {p.name for p in blobs.glob("??/*")}
    assert len(stored) == 3  # scene, texture, library

    second = farm.cli("submit", str(scene), "--frames", "2", "--json")
    assert second.returncode == 0, second.stderr
    # The texture and the library are not sent again; the scene, whose paths the tracer
    # rewrites into a freshly compressed copy, may be.
    assert len({p.name for p in blobs.glob("??/*")} - stored) <= 1
    assert re.search(r"uploaded [01] of 3 files", second.stderr), second.stderr
