"""Reading an EXR frame's beauty a strip of scan lines at a time, so that a 200 MB frame costs
its reader a few megabytes, not the whole picture in float (and its copies).

The OpenEXR library's Python API reads a whole file or its headers only; so each strip is cut
out of the file as a small EXR of its own (`core/exr_layout.strip_file`: the part's header with
its data window cut to the strip, and the strip's chunks as stored) and the library decodes
that. Only scan-line parts can be cut so; for a tiled or deep beauty the whole file is read.
"""

from __future__ import annotations

import io
import math
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np
import OpenEXR

from flamenco.core.exr_layout import (
    HeadersCutOff,
    Layout,
    chunk_header_size,
    read_layout,
    strip_file,
)

# How much of an EXR's start to read for its headers and offset tables: a little first, more
# only for files with very many parts or chunks; never the pixels of a big frame.
HEAD_READS = (1 << 20, 64 << 20)
STRIP_BYTES = 2 << 20  # about this much of a beauty's pixels per strip, as stored
# Where the beauty lives: a plain EXR's RGB(A); a multilayer EXR's composite, else the first
# view layer's Combined pass (Blender names it "<view layer>.Combined").
_BEAUTY_NAMES = ("RGBA", "RGB", "Composite.Combined")
_BEAUTY_SUFFIX = ".Combined"


def read_exr_layout(path: Path) -> tuple[bytes, Layout]:
    """The file's first bytes, through its offset tables, and its layout; raises HeadersCutOff
    when the file ends (or 64 MB pass) before they do."""
    size = path.stat().st_size
    for amount in HEAD_READS:
        with open(path, "rb") as f:
            head = f.read(min(size, amount))
        try:
            return head, read_layout(head)
        except HeadersCutOff:
            if len(head) == size:
                break
    raise HeadersCutOff


def beauty_name(channels: dict[str, np.ndarray]) -> str:
    """Which of a file's channels (as OpenEXR groups them: "RGBA", "ViewLayer.Combined", ...)
    is its beauty; without a colour layer, the first channel."""
    if not channels:
        raise ValueError("the EXR file has no channels")
    for name in _BEAUTY_NAMES:
        if name in channels:
            return name
    for name, pixels in channels.items():
        if name.endswith(_BEAUTY_SUFFIX) and pixels.ndim == 3:
            return name
    colour = [n for n, p in channels.items() if p.ndim == 3 and p.shape[2] >= 3]
    return colour[0] if colour else next(iter(channels))


def beauty_pixels(exr: OpenEXR.File) -> np.ndarray:
    """The beauty layer's pixels as stored, of a whole file: (height, width, channels), or
    (height, width)."""
    channels: dict[str, np.ndarray] = {}
    for part in exr.parts:  # Blender 5 writes one part per pass; older ones one part in all
        for name, channel in part.channels.items():
            channels.setdefault(name, channel.pixels)
    return channels[beauty_name(channels)]


def beauty_strips(path: Path, multiple_of: int = 1) -> Iterator[np.ndarray]:
    """The beauty's pixels as stored, top to bottom, a strip of rows at a time; each strip's
    height is a multiple of `multiple_of` (except the last)."""
    head, layout = read_exr_layout(path)
    found = _beauty_part(path, head, layout)
    if found is None:  # not cut into strips: the whole file, as one strip
        yield beauty_pixels(OpenEXR.File(str(path)))
        return
    part, name, row_bytes = found
    unit = math.lcm(multiple_of, layout.parts[part].lines_per_chunk or 1)  # whole chunks
    rows = max(1, STRIP_BYTES // max(1, row_bytes))
    rows = max(unit, rows - rows % unit)
    chunks_per_strip = rows // (layout.parts[part].lines_per_chunk or 1)
    with open(path, "rb") as f:
        for first in range(0, len(layout.tables[part]), chunks_per_strip):  # type: ignore[index]
            strip = decode_strip(f, head, layout, part, first, chunks_per_strip)
            yield strip.parts[0].channels[name].pixels


def _beauty_part(path: Path, head: bytes, layout: Layout) -> tuple[int, str, int] | None:
    """The part that holds the beauty, its name, and the bytes of one row of it as stored;
    None when that part cannot be cut into strips. Each part's first chunk is decoded to
    see its channels as the library groups them."""
    if layout.tables is None or not all(layout.is_scanline(i) for i in range(len(layout.parts))):
        return None
    channels: dict[str, tuple[int, np.ndarray]] = {}
    with open(path, "rb") as f:
        for part, offsets in enumerate(layout.tables):
            if not offsets:
                continue
            for name, channel in (
                decode_strip(f, head, layout, part, 0, 1).parts[0].channels.items()
            ):
                channels.setdefault(name, (part, channel.pixels))
    if not channels:
        return None
    name = beauty_name({n: pixels for n, (_, pixels) in channels.items()})
    part, pixels = channels[name]
    return part, name, pixels.nbytes // max(1, pixels.shape[0])


def decode_strip(
    f: BinaryIO, head: bytes, layout: Layout, part: int, first: int, count: int
) -> OpenEXR.File:
    """The chunks first .. first + count - 1 of a scan-line part of the open file `f` (whose
    first bytes are `head`), decoded: a File of one part, its data window those rows."""
    table = layout.tables[part][first : first + count]  # type: ignore[index]
    chunks = [_scanline_chunk(f, layout, at) for at in table]
    return OpenEXR.File(io.BytesIO(strip_file(head, layout, part, first, chunks)))


def encoded_chunks(strip: OpenEXR.File) -> list[bytes]:
    """The chunks of a File of one scan-line part as the library encodes them, in order: each
    as a single-part file stores it (y, length, data)."""
    out = io.BytesIO()
    strip.write(out)
    data = out.getvalue()
    table = read_layout(data).tables
    assert table is not None  # one scan-line part, just written by the library
    return [data[at : at + 8 + struct.unpack_from("<i", data, at + 4)[0]] for at in table[0]]


def _scanline_chunk(f: BinaryIO, layout: Layout, offset: int) -> bytes:
    """A scan-line chunk as a single-part file stores it: y, length, data."""
    skip = chunk_header_size(layout) - 8  # a multi-part file's part number
    f.seek(offset + skip)
    y_and_length = f.read(8)
    (length,) = struct.unpack_from("<i", y_and_length, 4)
    return y_and_length + f.read(length)
