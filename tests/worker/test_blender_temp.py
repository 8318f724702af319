"""Each Blender child has its own temporary folder under the Worker's, gone however it ends.

A real Blender (bpy wheel or executable); it is killed with SIGKILL as a crash would end it.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from flamenco.demo.scene import build_demo_scene
from flamenco.worker.blender import BlenderInstall
from flamenco.worker.warm_blender import WarmBlender

pytestmark = pytest.mark.blender


@pytest.fixture(scope="module")
def user_resources(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("blender-user")


@pytest.fixture(scope="module")
def scene(
    blender_install: BlenderInstall, user_resources: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    out = tmp_path_factory.mktemp("scene") / "temp.blend"
    return build_demo_scene(
        blender_install,
        out,
        frames=2,
        resolution=(32, 24),
        samples=1,
        user_resources=user_resources,
    )


async def _until(check: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    """Await an observable condition (the event loop keeps running meanwhile)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def _own_folder(root: Path) -> Path:
    (folder,) = root.iterdir()
    # Blender made its session folder inside: TMPDIR reached it.
    assert list(folder.glob("blender_*")), f"Blender's temporary folder is not in {folder}"
    return folder


def test_the_temp_folder_of_a_killed_blender_is_removed(
    blender_install: BlenderInstall, scene: Path, user_resources: Path, tmp_path: Path
) -> None:
    root = tmp_path / "blender-tmp"

    async def scenario() -> None:
        wb = WarmBlender(blender_install, scene, user_resources=user_resources, temp_root=root)
        try:
            await wb.start()
            folder = _own_folder(root)
            assert wb.pid is not None
            os.kill(wb.pid, signal.SIGKILL)  # a crash: nobody asked it to stop
            await _until(lambda: not folder.exists(), "the killed Blender's temp folder to go")
            assert list(root.iterdir()) == []
        finally:
            await wb.terminate()

    asyncio.run(scenario())


def test_the_temp_folder_goes_when_blender_is_stopped_and_each_child_has_its_own(
    blender_install: BlenderInstall, scene: Path, user_resources: Path, tmp_path: Path
) -> None:
    root = tmp_path / "blender-tmp"

    async def scenario() -> None:
        first = WarmBlender(blender_install, scene, user_resources=user_resources, temp_root=root)
        second = WarmBlender(blender_install, None, user_resources=user_resources, temp_root=root)
        try:
            await first.start()
            await second.start()
            folders = list(root.iterdir())
            assert len(folders) == 2  # one each, never shared
            await first.terminate()
            await _until(lambda: len(list(root.iterdir())) == 1, "the stopped one's folder to go")
            await second.quit()  # a normal exit
            await _until(lambda: list(root.iterdir()) == [], "the other's folder to go")
        finally:
            await first.terminate()
            await second.terminate()

    asyncio.run(scenario())
