"""EXR tiles joined in float (flamenco.tile_join) on tiles that real Blender wrote: a Cycles
frame (denoising off, few samples, tiny) rendered as 4 border tiles the way a Worker renders
them (worker/blender_child.use_tile_border, borders from core/tiles.py) and joined, equals
the same frame rendered whole in one process, bit for bit in every channel of every layer
and pass, for OPEN_EXR and OPEN_EXR_MULTILAYER."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import OpenEXR
import pytest

from flamenco import tile_join
from flamenco.tile_join import join_tiles

pytestmark = pytest.mark.blender

TILES = 4

RENDER_TILES = """
import sys, bpy
from flamenco.core.tiles import border_of, tile_regions
from flamenco.worker.blender_child import effective_resolution, use_output_format, use_tile_border

blend, out, fmt, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
bpy.ops.wm.open_mainfile(filepath=blend)
scene = bpy.context.scene
scene.cycles.use_denoising = False
scene.cycles.samples = 2
layer = scene.view_layers[0]
layer.use_pass_normal = True  # a pass besides the combined image
layer.use_pass_z = True
scene.view_layers.new("Second")  # a second layer (written by the multilayer format)
use_output_format(scene, fmt)


def render(path):
    scene.render.filepath = path
    bpy.ops.render.render(write_still=True)


scene.render.use_border = False
render(out + "/whole")
width, height = effective_resolution(scene)
for region in tile_regions(count, width, height):
    use_tile_border(scene, list(border_of(region, width, height)))
    render(f"{out}/tile-{region.index}")
"""


def channels(path: Path) -> dict[str, tuple[str, bytes, tuple[int, ...]]]:
    """Every channel of every part: its pixel type, raw bytes and shape."""
    found = {}
    with OpenEXR.File(str(path), separate_channels=True) as exr:
        for number, part in enumerate(exr.parts):
            for name, channel in part.channels.items():
                pixels = channel.pixels
                found[f"{number}/{name}"] = (str(pixels.dtype), pixels.tobytes(), pixels.shape)
    return found


@pytest.mark.parametrize("fmt", ["OPEN_EXR", "OPEN_EXR_MULTILAYER"])
def test_real_exr_tiles_join_into_the_one_process_frame_in_float(
    demo_scene: Path, tmp_path: Path, fmt: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    done = subprocess.run(
        [sys.executable, "-c", RENDER_TILES, str(demo_scene), str(tmp_path), fmt, str(TILES)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    whole = tmp_path / "whole.exr"
    tiles = [tmp_path / f"tile-{i}.exr" for i in range(TILES)]
    joined = tmp_path / "joined.exr"

    # Joined in strips of one chunk or so, as a big frame is, never read whole.
    monkeypatch.setattr(tile_join, "STRIP_BYTES", 1)

    def joined_whole(*args: object) -> None:
        raise AssertionError("the tiles were joined whole, not in strips")

    monkeypatch.setattr(tile_join, "_join_exr_whole", joined_whole)
    join_tiles(tiles, joined)

    expected, got = channels(whole), channels(joined)
    assert sorted(got) == sorted(expected)
    if fmt == "OPEN_EXR_MULTILAYER":  # both layers and the passes are there to compare
        names = " ".join(expected)
        assert "Second" in names and "Normal" in names and "Depth" in names, names
    for name, (dtype, data, shape) in expected.items():
        assert got[name][0] == dtype and got[name][2] == shape, name
        assert got[name][1] == data, f"{name}: the joined float pixels differ"
    # each tile alone is not the frame: the comparison above could fail
    assert channels(tiles[0]) != expected
