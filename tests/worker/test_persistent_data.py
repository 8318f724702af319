"""Cycles persistent data in the warm Blender: the same pixels, and Blender is told."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from PIL import Image, ImageChops

from flamenco.demo.scene import build_demo_scene
from flamenco.worker.blender import BlenderInstall, Event
from flamenco.worker.warm_blender import WarmBlender

pytestmark = pytest.mark.blender


async def _render_job(
    install: BlenderInstall, scene: Path, out: Path, user: Path, persistent: bool
) -> tuple[list[Path], list[Event]]:
    """Two commands in one warm Blender, as two tasks of one job would be rendered."""
    events: list[Event] = []

    async def record(event: Event) -> None:
        events.append(event)

    async with WarmBlender(install, scene, user_resources=user) as blender:
        paths = await blender.render([1, 2], out, "f_####", "PNG", record, persistent)
        paths += await blender.render([3], out, "f_####", "PNG", record, persistent)
    return paths, events


def test_frames_with_persistent_data_match_frames_without_and_blender_is_told(
    blender_install: BlenderInstall, tmp_path: Path
) -> None:
    user = tmp_path / "user"
    scene = build_demo_scene(
        blender_install,
        tmp_path / "s.blend",
        frames=3,
        resolution=(64, 48),
        samples=4,
        user_resources=user,
    )
    on, on_events = asyncio.run(_render_job(blender_install, scene, tmp_path / "on", user, True))
    off, off_events = asyncio.run(
        _render_job(blender_install, scene, tmp_path / "off", user, False)
    )

    assert (
        [p.name for p in on] == [p.name for p in off] == ["f_0001.png", "f_0002.png", "f_0003.png"]
    )
    for a, b in zip(on, off, strict=True):
        with Image.open(a) as left, Image.open(b) as right:
            assert (
                ImageChops.difference(left.convert("RGBA"), right.convert("RGBA")).getbbox() is None
            )
    # Blender reads the setting back after each command, and the task log says it.
    assert [e["persistent_data"] for e in on_events if e["event"] == "done"] == [True, True]
    assert [e["persistent_data"] for e in off_events if e["event"] == "done"] == [False, False]
    on_log = [e["line"] for e in on_events if e["event"] == "log"]
    off_log = [e["line"] for e in off_events if e["event"] == "log"]
    assert "Flamenco: Cycles persistent data on" in on_log
    assert "Flamenco: Cycles persistent data off" in off_log
