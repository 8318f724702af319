"""Bake, then render what was baked, with no shared disk: a blender-script job writes a
texture and lists it; a render job submitted with --after (its scene's texture missing at
submit) gets that file in its folder and renders with it, through a real farm and Blender."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import pytest
from PIL import Image

from e2e.test_dependencies import build_scene_with_dependencies
from farmkit import TestFarm
from flamenco.worker.blender import BlenderInstall

pytestmark = pytest.mark.blender

BAKED_RGB = (200, 40, 160)


def bake_script() -> str:
    """A script that 'bakes' cache/green.png (the texture the shot reads) in the job's folder."""
    png = io.BytesIO()
    Image.new("RGB", (8, 8), BAKED_RGB).save(png, "PNG")
    data = base64.b64encode(png.getvalue()).decode()
    return (
        "import base64, os\n"
        "os.makedirs('cache', exist_ok=True)\n"
        f"open('cache/green.png', 'wb').write(base64.b64decode({data!r}))\n"
        "FLAMENCO_OUTPUTS.append('cache/green.png')\n"
    )


def test_a_render_after_a_bake_renders_with_the_baked_file(
    farm: TestFarm, blender_install: BlenderInstall, tmp_path: Path
) -> None:
    # The shot's texture is what the bake makes: cache/green.png beside the shot.
    scene = build_scene_with_dependencies(
        blender_install, tmp_path / "src", "project/scenes/cache/green.png"
    )
    (scene.parent / "cache" / "green.png").unlink()  # nothing of it here: only the bake makes it
    script = tmp_path / "bake.py"
    script.write_text(bake_script())
    farm.start_server()
    farm.start_manager()
    farm.start_worker("w1")

    baked = farm.cli(
        "submit", str(scene), "--type", "blender-script", "--set", f"script={script}",
        "--name", "bake", "--allow-missing", "--json",
    )  # fmt: skip
    assert baked.returncode == 0, baked.stderr
    bake_id = json.loads(baked.stdout)["id"]
    shot = farm.cli(
        "submit", str(scene), "--frames", "1", "--after", bake_id, "--allow-missing",
        "--output-format", "PNG", "--name", "shot", "--json",
    )  # fmt: skip
    assert shot.returncode == 0, shot.stderr
    assert "green.png" in shot.stderr  # missing here, warned about
    shot_id = json.loads(shot.stdout)["id"]

    assert farm.wait_job(bake_id).status == "completed", farm.logs()
    assert farm.wait_job(shot_id).status == "completed", farm.logs()
    fetched = farm.cli("jobs", "download", shot_id, str(tmp_path / "frames"))
    assert fetched.returncode == 0, fetched.stderr
    (frame,) = sorted((tmp_path / "frames").glob("*.png"))
    pixel = Image.open(frame).convert("RGB").getpixel((10, 16))
    assert all(abs(a - b) <= 6 for a, b in zip(pixel, BAKED_RGB, strict=True)), pixel
