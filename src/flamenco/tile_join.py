"""Joining a frame's tiles (core/tiles.py) into the frame, on the Server.

Each tile is a full-size frame with only its region rendered, so the join takes each tile's
region and nothing else. EXR tiles are joined in their own float channels (half or full) with
the OpenEXR library, every layer and pass of every part; other formats with Pillow and numpy in
the tile's own mode and format, pixels unchanged (a JPEG is encoded again, at quality 100: its
compression is lossy whatever is done). Blocking: run it in a thread.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import OpenEXR
from PIL import Image

from flamenco.core.tiles import TileRegion, tile_regions
from flamenco.images import image_size, is_exr

PNG_BIT_DEPTH_OFFSET = 24  # the IHDR's bit depth byte, after the signature and chunk header


class TilesDoNotJoin(ValueError):
    """The tiles cannot make one frame; the message is one sentence."""


def join_tiles(tiles: Sequence[Path], dest: Path) -> None:
    """Write the frame that tiles 0..N-1 (in index order) make together to `dest`."""
    width, height = image_size(tiles[0])
    for tile in tiles[1:]:
        if image_size(tile) != (width, height):
            raise TilesDoNotJoin(
                f"The tiles of one frame differ in size ({width}x{height} and "
                f"{'x'.join(map(str, image_size(tile)))}), so they cannot be joined."
            )
    regions = tile_regions(len(tiles), width, height)
    if is_exr(tiles[0]):
        _join_exr(tiles, regions, height, dest)
    else:
        _join_picture(tiles, regions, height, dest)


def _rows(region: TileRegion, height: int) -> slice:
    """The region's rows in an image array, whose first row is the top (Blender counts from
    the bottom)."""
    return slice(height - region.y1, height - region.y0)


def _join_exr(tiles: Sequence[Path], regions: list[TileRegion], height: int, dest: Path) -> None:
    joined = OpenEXR.File(str(tiles[0]))
    for tile, region in zip(tiles[1:], regions[1:], strict=True):
        source = OpenEXR.File(str(tile))
        for part, from_part in zip(joined.parts, source.parts, strict=True):
            for name, channel in part.channels.items():
                theirs = from_part.channels[name].pixels
                channel.pixels[_rows(region, height), region.x0 : region.x1] = theirs[
                    _rows(region, height), region.x0 : region.x1
                ]
    joined.write(str(dest))


def _join_picture(
    tiles: Sequence[Path], regions: list[TileRegion], height: int, dest: Path
) -> None:
    if _is_16_bit_colour_png(tiles[0]):
        # Pillow reads 16-bit colour PNG as 8-bit: a join through it would lose the depth.
        raise TilesDoNotJoin(
            "Tiles of 16-bit colour PNG frames cannot be joined without losing depth; "
            "render tiles as OPEN_EXR or 8-bit PNG."
        )
    with Image.open(tiles[0]) as first:
        mode, kind = first.mode, first.format or "PNG"
        pixels = np.array(first)
    for tile, region in zip(tiles[1:], regions[1:], strict=True):
        with Image.open(tile) as img:
            theirs = np.asarray(img)
        pixels[_rows(region, height), region.x0 : region.x1] = theirs[
            _rows(region, height), region.x0 : region.x1
        ]
    options = {"quality": 100} if kind == "JPEG" else {}
    Image.fromarray(pixels, mode=mode).save(dest, format=kind, **options)


def _is_16_bit_colour_png(path: Path) -> bool:
    with open(path, "rb") as f:
        head = f.read(PNG_BIT_DEPTH_OFFSET + 2)
    return head.startswith(b"\x89PNG") and head[PNG_BIT_DEPTH_OFFSET] == 16 and head[25] != 0
