"""The version of the Blender that saved a .blend, read from its header without Blender."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from flamenco.blendfile import blend_version_text, scene_resolution
from testdata import CORPUS


@pytest.mark.parametrize(
    ("name", "version"),
    [
        ("basic_file.blend", "2.79"),
        ("basic_file_compressed.blend", "2.79"),  # gzip
        ("T55539-particles/particle.blend", "2.79"),  # gzip
        ("absolute_path.blend", "2.80"),
        ("geometry-nodes/file_to_pack.blend", "2.93"),
        ("geometry-nodes-2/shot_file.blend", "3.0"),
        ("basic_file_compressed_zstd.blend", "3.0"),  # zstd
        ("basic_file_zstandard.blend", "3.1"),
        ("udim/v01_UDIM_BAT_debugging.blend", "3.2"),
    ],
)
def test_version_of_corpus_files(name: str, version: str) -> None:
    assert blend_version_text(CORPUS / name) == version


@pytest.mark.parametrize(
    ("head", "version"),
    [
        (b"BLENDER-v402REND", "4.2"),  # 4.x: 'BLENDER', pointer size, endianness, version
        (b"BLENDER_v279REND", "2.79"),  # 32-bit pointers
        (b"BLENDER17-01v0500REND", "5.0"),  # 5.0: header size, format version, then version
        (b"BLENDER17-01v0501REND", "5.1"),
        (b"NOTBLEND-v402REND", None),
        (b"BLENDER", None),
        (b"", None),
    ],
)
def test_version_of_headers(tmp_path: Path, head: bytes, version: str | None) -> None:
    path = tmp_path / "scene.blend"
    path.write_bytes(head + bytes(64))
    assert blend_version_text(path) == version


@pytest.mark.blender
def test_version_of_a_file_saved_by_blender_5(demo_scene: Path) -> None:
    """The demo scene is saved by the bpy 5.0 wheel: the new header, zstd-compressed."""
    assert demo_scene.read_bytes()[:4] == b"\x28\xb5\x2f\xfd"
    assert blend_version_text(demo_scene) == "5.0"


def test_version_of_a_missing_file(tmp_path: Path) -> None:
    assert blend_version_text(tmp_path / "gone.blend") is None


SAVE_TWO_SCENES = """
import sys, bpy
first = bpy.context.scene
first.render.resolution_x, first.render.resolution_y = 64, 32
second = bpy.data.scenes.new("Second")
second.render.resolution_x, second.render.resolution_y = 300, 121
second.render.resolution_percentage = 50
bpy.context.window.scene = second
bpy.ops.wm.save_as_mainfile(filepath=sys.argv[1], compress=sys.argv[2] == "compress")
"""


@pytest.mark.blender
@pytest.mark.parametrize("compress", ["plain", "compress"])
def test_scene_resolution_is_the_current_scenes_rendered_size(
    tmp_path: Path, compress: str
) -> None:
    """What Blender renders (the window's scene at its percentage), read without Blender."""
    blend = tmp_path / "two.blend"
    done = subprocess.run(
        [sys.executable, "-c", SAVE_TWO_SCENES, str(blend), compress],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert scene_resolution(blend) == (150, 60)


def test_scene_resolution_of_what_is_not_a_blend_is_unknown(tmp_path: Path) -> None:
    (tmp_path / "not.blend").write_bytes(b"BLENDER but not really")
    assert scene_resolution(tmp_path / "not.blend") is None
    assert scene_resolution(tmp_path / "missing.blend") is None
    assert scene_resolution(CORPUS / "basic_file.blend") is not None  # 2.79 files too
