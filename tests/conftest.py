"""Fixtures shared by all tests: real Blender, real processes, real sockets."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from farmkit import DEMO_FRAMES, DEMO_RESOLUTION, TestFarm
from flamenco.demo.scene import build_demo_scene
from flamenco.worker.blender import BlenderInstall, BlenderNotFound, find_blender


@pytest.fixture(scope="session")
def blender_install() -> BlenderInstall:
    """The Blender the Workers will use. Missing Blender is a failure, never a skip."""
    try:
        return find_blender(os.environ.get("FLAMENCO_WORKER_BLENDER") or None)
    except BlenderNotFound as exc:
        pytest.fail(f"These tests need a real Blender: {exc}")


@pytest.fixture(scope="session")
def demo_scene(blender_install: BlenderInstall, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 10-frame animated Cycles scene, small enough to render fast."""
    folder = tmp_path_factory.mktemp("demo-scene")
    return build_demo_scene(
        blender_install,
        folder / "anim.blend",
        frames=DEMO_FRAMES,
        resolution=DEMO_RESOLUTION,
        samples=4,
        user_resources=folder / "user",
    )


@pytest.fixture
def farm(tmp_path: Path) -> Iterator[TestFarm]:
    """An empty farm folder; the test starts the parts it needs. All stop at the end."""
    with TestFarm(tmp_path / "farm") as test_farm:
        yield test_farm


@pytest.fixture(scope="session")
def slow_scene(blender_install: BlenderInstall, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """8 frames of about half a second each: long enough to break things mid-render."""
    folder = tmp_path_factory.mktemp("slow-scene")
    return build_demo_scene(
        blender_install,
        folder / "slow.blend",
        frames=8,
        resolution=(160, 90),
        samples=64,
        user_resources=folder / "user",
    )


@pytest.fixture(scope="session")
def endless_scene(
    blender_install: BlenderInstall, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """Frames that take practically forever: for stopping renders in the middle."""
    folder = tmp_path_factory.mktemp("endless-scene")
    return build_demo_scene(
        blender_install,
        folder / "endless.blend",
        frames=4,
        resolution=(64, 48),
        samples=1_000_000,
        user_resources=folder / "user",
    )
