"""Joining a frame's tiles (core/tiles.py) into the frame, on the Server.

Each tile is a full-size frame with only its region rendered, so the join takes each tile's
region and nothing else. EXR tiles are joined in their own float channels (half or full) with
the OpenEXR library, every layer and pass of every part; other formats with Pillow and numpy in
the tile's own mode and format, pixels unchanged (a JPEG is encoded again, at quality 100: its
compression is lossy whatever is done). Blocking: run it in a thread.

An EXR of scan lines is joined a strip of chunks at a time, so a 200 MB frame never lies in
memory whole: each tile's strip is cut out as a small EXR (`core/exr_layout.strip_file`), the
tiles' regions are put together in the first tile's strip, which the library encodes again, and
its chunks go into the joined file under the first tile's headers. A tiled or deep EXR is
joined whole.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

import numpy as np
import OpenEXR
from PIL import Image

from flamenco.core.exr_layout import Layout
from flamenco.core.tiles import TileRegion, tile_regions
from flamenco.exr_strips import STRIP_BYTES, decode_strip, encoded_chunks, read_exr_layout
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
    heads = [read_exr_layout(tile) for tile in tiles]
    if all(_cuttable(layout, heads[0][1]) for _, layout in heads):
        _join_exr_strips(tiles, heads, regions, height, dest)
    else:
        _join_exr_whole(tiles, regions, height, dest)


def _cuttable(layout: Layout, first: Layout) -> bool:
    """Whether a tile can be joined in strips: scan lines only, laid out as the first tile."""
    return (
        layout.tables is not None
        and first.tables is not None
        and all(layout.is_scanline(i) for i in range(len(layout.parts)))
        and [len(t) for t in layout.tables] == [len(t) for t in first.tables]
        and [(p.data_window, p.compression) for p in layout.parts]
        == [(p.data_window, p.compression) for p in first.parts]
    )


def _join_exr_strips(
    tiles: Sequence[Path],
    heads: list[tuple[bytes, Layout]],
    regions: list[TileRegion],
    height: int,
    dest: Path,
) -> None:
    head, layout = heads[0]
    assert layout.tables is not None  # _cuttable said so
    headers_end = layout.tables_end - 8 * sum(len(t) for t in layout.tables)
    files = [open(tile, "rb") for tile in tiles]  # noqa: SIM115 - closed below, all of them
    try:
        with open(dest, "wb") as out:
            out.write(head[:headers_end])
            out.write(bytes(layout.tables_end - headers_end))  # the tables, written at the end
            offsets: list[int] = []
            for part, table in enumerate(layout.tables):
                prefix = struct.pack("<i", part) if layout.multipart else b""
                step = _chunks_per_strip(files[0], heads[0], part)
                for first in range(0, len(table), step):
                    strip = _joined_strip(files, heads, regions, height, part, first, step)
                    for chunk in strip:
                        offsets.append(out.tell())
                        out.write(prefix + chunk)
            out.seek(headers_end)
            out.write(struct.pack(f"<{len(offsets)}Q", *offsets))
    finally:
        for f in files:
            f.close()


def _chunks_per_strip(f: BinaryIO, head: tuple[bytes, Layout], part: int) -> int:
    """As many chunks as make about STRIP_BYTES of the part's pixels, decoded."""
    one = decode_strip(f, *head, part, 0, 1)
    chunk_bytes = sum(c.pixels.nbytes for c in one.parts[0].channels.values())
    return max(1, STRIP_BYTES // max(1, chunk_bytes))


def _joined_strip(
    files: list[BinaryIO],
    heads: list[tuple[bytes, Layout]],
    regions: list[TileRegion],
    height: int,
    part: int,
    first: int,
    count: int,
) -> list[bytes]:
    """The chunks first .. first + count - 1 of a part of the joined frame, encoded: the first
    tile's strip with every other tile's region in it."""
    joined = decode_strip(files[0], *heads[0], part, first, count)
    top = first * (heads[0][1].parts[part].lines_per_chunk or 1)  # its first row from the top
    rows = next(iter(joined.parts[0].channels.values())).pixels.shape[0]
    for tile, region in enumerate(regions[1:], start=1):
        wanted = _rows(region, height)
        low, high = max(wanted.start, top), min(wanted.stop, top + rows)
        if low >= high:
            continue  # this tile has nothing in the strip
        theirs = decode_strip(files[tile], *heads[tile], part, first, count).parts[0].channels
        here, columns = slice(low - top, high - top), slice(region.x0, region.x1)
        for name, channel in joined.parts[0].channels.items():
            channel.pixels[here, columns] = theirs[name].pixels[here, columns]
    return encoded_chunks(joined)


def _join_exr_whole(
    tiles: Sequence[Path], regions: list[TileRegion], height: int, dest: Path
) -> None:
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
