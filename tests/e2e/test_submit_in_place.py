"""Submitting reads a project's files where they are, and only when they changed.

The submitter's textures are watched with inotify (reads are opens; the tests run as root,
so making the files unreadable would prove nothing): the first submission reads them, an
unchanged resubmission does not open them at all, a changed texture is read, sent and
rendered by the next job.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from inotify_simple import INotify, flags
from PIL import Image
from test_dependencies import TEXTURE_RGB, _close, build_scene_with_dependencies

from farmkit import TestFarm
from flamenco.worker.blender import BlenderInstall

pytestmark = pytest.mark.blender

HOUR_NS = 3600 * 10**9
RED = (220, 30, 30)


def settle(*paths: Path) -> None:
    """Last changed an hour ago, as a project's files usually are (the hash cache does not
    remember a file changed within seconds of being hashed)."""
    for path in paths:
        mtime = path.stat().st_mtime_ns - HOUR_NS
        os.utime(path, ns=(mtime, mtime))


@contextmanager
def opens_in(folder: Path) -> Iterator[list[str]]:
    """The names of the files opened in `folder` while the block ran (filled at its end)."""
    opened: list[str] = []
    with INotify() as watch:
        watch.add_watch(folder, flags.OPEN)
        yield opened
        opened.extend(event.name for event in watch.read(timeout=0))


def rendered_colours(farm: TestFarm, job_id: str, folder: Path) -> list[tuple[int, ...]]:
    assert farm.wait_job(job_id).status == "completed", farm.logs()
    fetched = farm.cli("jobs", "download", job_id, str(folder))
    assert fetched.returncode == 0, fetched.stderr
    frames = sorted(folder.glob("*.png"))
    assert frames, f"no frames downloaded into {folder}"
    pixels = []
    for frame in frames:
        image = Image.open(frame).convert("RGB")
        assert _close(image.getpixel((40, 16)), (0, 0, 255)), "the linked cube is missing"
        pixels.append(image.getpixel((10, 16)))
    return pixels


def test_textures_are_read_in_place_and_only_when_changed(
    farm: TestFarm, blender_install: BlenderInstall, tmp_path: Path
) -> None:
    scene = build_scene_with_dependencies(blender_install, tmp_path / "src")
    textures = tmp_path / "src" / "project" / "textures"
    library = tmp_path / "src" / "elsewhere" / "libs" / "lib.blend"
    settle(textures / "green.png", library, scene)
    temp = tmp_path / "tmp"
    temp.mkdir()
    env = {"XDG_CACHE_HOME": str(tmp_path / "cache"), "TMPDIR": str(temp)}
    farm.start_server()
    farm.start_manager()
    farm.start_worker("w1")

    def submit() -> tuple[str, str]:
        done = farm.cli("submit", str(scene), "--frames", "1", "--json", env=env)
        assert done.returncode == 0, done.stderr
        assert list(temp.iterdir()) == [], "the rewritten .blend files are removed"
        return json.loads(done.stdout)["id"], done.stderr

    with opens_in(textures) as opened:
        first, said = submit()
    assert "green.png" in opened, "the texture is hashed and uploaded from where it is"
    assert re.search(r"Hashed 3 of 3 files", said), said
    assert all(_close(p, TEXTURE_RGB) for p in rendered_colours(farm, first, tmp_path / "f1"))
    assert (tmp_path / "cache" / "flamenco" / "hashes.sqlite3").is_file()

    with opens_in(textures) as opened:
        _, said = submit()
    assert opened == [], "an unchanged texture is not read again"
    # Only the scene is hashed: the tracer rewrote its paths into a fresh temporary copy.
    assert re.search(r"Hashed 1 of 3 files .*; 2 unchanged", said), said

    Image.new("RGB", (8, 8), RED).save(textures / "green.png")
    with opens_in(textures) as opened:
        changed, said = submit()
    assert "green.png" in opened
    assert re.search(r"Hashed 2 of 3 files", said), said
    assert re.search(r"uploaded [12] of 3 files", said), said
    assert all(_close(p, RED) for p in rendered_colours(farm, changed, tmp_path / "f3"))
