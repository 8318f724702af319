"""Tiles of a frame: grids that fit, regions covering every pixel once, border fractions that
Blender's truncation (in 32-bit floats) turns back into exactly the region's pixels."""

import struct

import pytest

from flamenco.core.tiles import (
    TileError,
    border_of,
    check_tile_count,
    grid_shape,
    tile_border,
    tile_file_name,
    tile_regions,
)


def f32(value: float) -> float:
    """The value as Blender stores a border: a 32-bit float."""
    return struct.unpack("f", struct.pack("f", value))[0]


def blender_pixels(border: float, size: int) -> int:
    """What Blender and Cycles make of a border edge: int(fraction * size), in float32."""
    return int(f32(f32(border) * f32(float(size))))


@pytest.mark.parametrize(
    ("count", "width", "height", "shape"),
    [
        (2, 1920, 1080, (2, 1)),
        (4, 1920, 1080, (2, 2)),
        (4, 100, 1000, (1, 4)),
        (6, 97, 61, (3, 2)),
        (7, 1920, 1080, (7, 1)),
        (7, 3, 7, (1, 7)),
        (16, 4, 4, (4, 4)),
        (12, 12, 1, (12, 1)),
    ],
)
def test_grid_shape_fits_the_frame_with_the_squarest_tiles(
    count: int, width: int, height: int, shape: tuple[int, int]
) -> None:
    assert grid_shape(count, width, height) == shape


@pytest.mark.parametrize(
    ("count", "width", "height", "sentence"),
    [
        (1, 1920, 1080, "--tiles must be at least 2, got 1."),
        (0, 1920, 1080, "--tiles must be at least 2, got 0."),
        (17, 4, 4, "--tiles 17 is more than the 4x4 frame's 16 pixels."),
        (7, 4, 4, "--tiles 7 cannot split the 4x4 frame into a grid;"),
    ],
)
def test_counts_that_cannot_split_the_frame_get_one_sentence(
    count: int, width: int, height: int, sentence: str
) -> None:
    with pytest.raises(TileError) as err:
        grid_shape(count, width, height)
    assert str(err.value).startswith(sentence)


def test_check_tile_count_allows_from_two_to_the_pixel_count() -> None:
    check_tile_count(2, 1, 2)
    check_tile_count(16, 4, 4)


@pytest.mark.parametrize(
    ("count", "width", "height"),
    [
        (2, 1920, 1080),
        (4, 97, 61),
        (6, 97, 61),
        (7, 1919, 1081),
        (16, 4, 4),
        (9, 4001, 2999),
        (5, 7, 5),
        (64, 3840, 2160),
        (3, 65536, 3),
    ],
)
def test_regions_cover_every_pixel_once_and_blender_renders_exactly_them(
    count: int, width: int, height: int
) -> None:
    regions = tile_regions(count, width, height)
    assert [r.index for r in regions] == list(range(count))
    assert sum((r.x1 - r.x0) * (r.y1 - r.y0) for r in regions) == width * height
    # no overlaps: the regions' edges come from one set of cuts per axis
    for a in regions:
        assert 0 <= a.x0 < a.x1 <= width and 0 <= a.y0 < a.y1 <= height
        for b in regions:
            if a is not b:
                assert a.x1 <= b.x0 or b.x1 <= a.x0 or a.y1 <= b.y0 or b.y1 <= a.y0
        min_x, max_x, min_y, max_y = border_of(a, width, height)
        assert (blender_pixels(min_x, width), blender_pixels(max_x, width)) == (a.x0, a.x1)
        assert (blender_pixels(min_y, height), blender_pixels(max_y, height)) == (a.y0, a.y1)


def test_tile_file_name_marks_the_frame_name() -> None:
    assert tile_file_name("frame_0012.png", 0, 4) == "frame_0012.png.tile-1-of-4"


def test_tile_border_from_a_command_and_blenders_resolution() -> None:
    assert tile_border({"frames": [1]}, (100, 100)) is None
    assert tile_border({"tile": {"index": 1, "count": 2}}, (100, 50)) == (0.5025, 1.0, 0.0, 1.0)
    with pytest.raises(TileError, match="more than the 2x2 frame's 4 pixels"):
        tile_border({"tile": {"index": 0, "count": 5}}, (2, 2))
