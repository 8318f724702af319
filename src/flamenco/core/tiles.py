"""One frame over many machines: splitting a frame into tiles and knowing their pixels.

A tile task renders its frame as a border render without crop: Blender writes the whole
frame's size with only the tile's region rendered. Blender and Cycles turn the border
(fractions of the frame, stored as 32-bit floats) into pixels by truncating
`fraction * size`, so each border edge is put a quarter pixel past the pixel it starts at:
truncation (and rounding too) land on exactly that pixel despite float error, and the
regions of a frame cover every pixel exactly once (tests/core/test_tiles.py).

Pixels count as Blender counts them: x from the left, y from the bottom.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

MAX_TILES = 65_536 * 65_536  # never more tiles than Blender's largest frame has pixels


class TileError(ValueError):
    """A tile count that cannot split the frame; the message is one sentence."""


@dataclass(frozen=True)
class TileRegion:
    """The pixels one tile renders: columns x0..x1-1, rows y0..y1-1 (from the bottom)."""

    index: int
    x0: int
    x1: int
    y0: int
    y1: int


def check_tile_count(count: int, width: int, height: int) -> None:
    """Refuse a count below 2 or above the frame's pixel count, in one sentence."""
    if count < 2:
        raise TileError(f"--tiles must be at least 2, got {count}.")
    if count > width * height:
        raise TileError(
            f"--tiles {count} is more than the {width}x{height} frame's {width * height} pixels."
        )


def grid_shape(count: int, width: int, height: int) -> tuple[int, int]:
    """Columns and rows of the grid of `count` tiles: the factorisation that fits the frame
    with the squarest tiles (a prime count gives bands: rows, or columns if too few rows)."""
    check_tile_count(count, width, height)
    best: tuple[float, int, int] | None = None
    for columns in range(1, math.isqrt(count) + 1):
        if count % columns:
            continue
        for cols, rows in ((columns, count // columns), (count // columns, columns)):
            if cols > width or rows > height:
                continue
            # how far a tile is from square, in pixels' proportions
            skew = abs(math.log((width / cols) / (height / rows)))
            if best is None or skew < best[0]:
                best = (skew, cols, rows)
    if best is None:
        raise TileError(
            f"--tiles {count} cannot split the {width}x{height} frame into a grid; "
            "choose a count with a factor that fits its width or height."
        )
    return best[1], best[2]


def _cuts(size: int, parts: int) -> list[int]:
    """Pixel boundaries of `parts` near-equal spans of `size` pixels."""
    return [size * i // parts for i in range(parts + 1)]


def tile_regions(count: int, width: int, height: int) -> list[TileRegion]:
    """The regions of a frame's tiles, row by row from the bottom; together every pixel once."""
    columns, rows = grid_shape(count, width, height)
    xs, ys = _cuts(width, columns), _cuts(height, rows)
    return [
        TileRegion(row * columns + col, xs[col], xs[col + 1], ys[row], ys[row + 1])
        for row in range(rows)
        for col in range(columns)
    ]


def _edge(pixel: int, size: int) -> float:
    """The border fraction that Blender truncates to `pixel` (see the module's docstring)."""
    if pixel <= 0:
        return 0.0
    if pixel >= size:
        return 1.0
    return (pixel + 0.25) / size


def border_of(region: TileRegion, width: int, height: int) -> tuple[float, float, float, float]:
    """render.border_min_x, border_max_x, border_min_y, border_max_y for a region."""
    return (
        _edge(region.x0, width),
        _edge(region.x1, width),
        _edge(region.y0, height),
        _edge(region.y1, height),
    )


def tile_file_name(filename: str, index: int, count: int) -> str:
    """Where the Server keeps a tile until its frame is joined: the frame's name, marked."""
    return f"{filename}.tile-{index + 1}-of-{count}"


def tile_border(
    command: Mapping[str, Any], resolution: tuple[int, int]
) -> tuple[float, float, float, float] | None:
    """The border of the tile a render command names ('tile': index and count), for a frame
    of `resolution` as Blender reports it; None for a whole frame. TileError if the frame
    cannot be split so."""
    tile = command.get("tile")
    if not tile:
        return None
    width, height = resolution
    regions = tile_regions(int(tile["count"]), width, height)
    return border_of(regions[int(tile["index"])], width, height)
