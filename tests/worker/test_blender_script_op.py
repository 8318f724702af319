"""The warm Blender's `script` op (blender-script's engine) in a real Blender: the script runs
with the file open in the job's folder, its listed files come back, a raise is its last
traceback line, and the process is not used again afterwards."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from flamenco.worker.blender import BlenderInstall
from flamenco.worker.warm_blender import ScriptFailed, WarmBlender

pytestmark = pytest.mark.blender

WRITES_AND_LISTS = """
import os
import bpy

scene = bpy.context.scene
os.makedirs("cache", exist_ok=True)
name = os.path.basename(bpy.data.filepath)
with open("cache/info.txt", "w") as out:
    out.write(f"{' '.join(FLAMENCO_ARGS)}|{scene.frame_current}|{name}")
FLAMENCO_OUTPUTS.append("cache/info.txt")
FLAMENCO_OUTPUTS.append(os.path.abspath("absolute.txt"))
open("absolute.txt", "w").write("absolute")
"""

RAISES = """
def bake():
    raise ValueError("the cache folder is full")

bake()
"""


def _job(tmp_path: Path, scene: Path, script: str) -> tuple[Path, Path, Path]:
    job_dir = tmp_path / "job"
    job_dir.mkdir()
    blend = job_dir / "scene.blend"
    shutil.copy(scene, blend)
    (job_dir / "bake.py").write_text(script)
    return job_dir, blend, job_dir / "bake.py"


def test_a_script_runs_in_the_open_file_and_returns_the_files_it_listed(
    blender_install: BlenderInstall, demo_scene: Path, tmp_path: Path
) -> None:
    job_dir, blend, script = _job(tmp_path, demo_scene, WRITES_AND_LISTS)
    logged: list[str] = []

    async def scenario() -> tuple[list[Path], bool]:
        async def on_event(event: dict) -> None:
            if event.get("event") == "log":
                logged.append(event["line"])

        blender = WarmBlender(blender_install, blend, user_resources=tmp_path / "user")
        try:
            await blender.start()
            outputs = await blender.run_script(script, ["--quality", "high"], job_dir, 7, on_event)
            return outputs, blender.alive
        finally:
            await blender.terminate()

    outputs, alive_after = asyncio.run(scenario())
    assert outputs == [job_dir / "cache" / "info.txt", job_dir / "absolute.txt"]
    assert (job_dir / "cache" / "info.txt").read_text() == "--quality high|7|scene.blend"
    assert not alive_after  # the script may have changed the file: never used again


def test_a_script_that_raises_fails_with_its_last_traceback_line(
    blender_install: BlenderInstall, demo_scene: Path, tmp_path: Path
) -> None:
    job_dir, blend, script = _job(tmp_path, demo_scene, RAISES)
    logged: list[str] = []

    async def scenario() -> None:
        async def on_event(event: dict) -> None:
            if event.get("event") == "log":
                logged.append(event["line"])

        async with WarmBlender(blender_install, blend, user_resources=tmp_path / "u") as blender:
            await blender.run_script(script, [], job_dir, None, on_event)

    with pytest.raises(ScriptFailed) as failed:
        asyncio.run(scenario())
    assert str(failed.value) == "ValueError: the cache folder is full"
    # The whole traceback is in the task's log, the script's own line included.
    assert any("in bake" in line for line in logged), logged
