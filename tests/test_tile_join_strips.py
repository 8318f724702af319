"""flamenco.tile_join on EXR tiles written here with OpenEXR, joined a strip of a chunk or two
at a time: every layout the strips must get right (several parts, compressions with 1, 16 and
32 scan lines a chunk, bottom-to-top line order, half and float) gives the whole frame, bit for
bit; each tile holds its own region of the frame and noise elsewhere, as a border render does."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import OpenEXR
import pytest

from flamenco import tile_join
from flamenco.core.tiles import tile_regions
from flamenco.tile_join import join_tiles

HEIGHT, WIDTH, TILES = 75, 41, 4


def frame_parts(seed: int) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [
        {"V.Combined": rng.random((HEIGHT, WIDTH, 4)).astype(np.float16)},
        {"V.Depth.Z": rng.random((HEIGHT, WIDTH)).astype(np.float32)},
    ]


def write(path: Path, parts: list[dict[str, np.ndarray]], header: dict[str, object]) -> None:
    made = [
        OpenEXR.Part(dict(header), {n: p.copy() for n, p in channels.items()}, name=f"p{i}")
        for i, channels in enumerate(parts)
    ]
    OpenEXR.File(made).write(str(path))


def read(path: Path) -> dict[str, np.ndarray]:
    exr = OpenEXR.File(str(path))
    return {f"{i}/{n}": c.pixels for i, p in enumerate(exr.parts) for n, c in p.channels.items()}


@pytest.mark.parametrize(
    "compression",
    [OpenEXR.NO_COMPRESSION, OpenEXR.ZIP_COMPRESSION, OpenEXR.PIZ_COMPRESSION],
)
@pytest.mark.parametrize("line_order", [OpenEXR.INCREASING_Y, OpenEXR.DECREASING_Y])
def test_tiles_joined_in_strips_are_the_whole_frame(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    compression: OpenEXR.Compression,
    line_order: OpenEXR.LineOrder,
) -> None:
    header = {"compression": compression, "type": OpenEXR.scanlineimage, "lineOrder": line_order}
    whole = frame_parts(1)
    write(tmp_path / "whole.exr", whole, header)
    tiles = []
    for region in tile_regions(TILES, WIDTH, HEIGHT):
        parts = frame_parts(100 + region.index)  # noise outside the tile's region
        rows = slice(HEIGHT - region.y1, HEIGHT - region.y0)  # Blender counts from the bottom
        for mine, frame in zip(parts, whole, strict=True):
            for name, pixels in mine.items():
                pixels[rows, region.x0 : region.x1] = frame[name][rows, region.x0 : region.x1]
        tiles.append(tmp_path / f"tile-{region.index}.exr")
        write(tiles[-1], parts, header)
    monkeypatch.setattr(tile_join, "STRIP_BYTES", 1)  # a chunk a strip

    def joined_whole(*args: object) -> None:
        raise AssertionError("the tiles were joined whole, not in strips")

    monkeypatch.setattr(tile_join, "_join_exr_whole", joined_whole)
    join_tiles(tiles, tmp_path / "joined.exr")

    expected, got = read(tmp_path / "whole.exr"), read(tmp_path / "joined.exr")
    assert sorted(got) == sorted(expected) == ["0/V.Combined", "1/V.Depth.Z"]
    for name, pixels in expected.items():
        assert got[name].dtype == pixels.dtype, name
        assert np.array_equal(got[name], pixels), name
    assert not np.array_equal(read(tiles[0])["0/V.Combined"], expected["0/V.Combined"])
