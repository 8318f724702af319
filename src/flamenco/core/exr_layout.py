"""Where things are in an OpenEXR file, read from its first bytes as the format's specification
lays them out: each part's header and the attributes that say how its pixels are stored, and
the chunk offset tables that follow the headers. No pixel is decoded here.

Two uses: checking that a frame is whole (`frame_check.py`: every chunk in the tables is in the
file), and reading a big frame a strip of scan lines at a time (`exr_strips.py`): a strip of a
scan-line part becomes a small single-part EXR of its own (`strip_file`), its header the part's
with the data window cut to the strip, which the OpenEXR library then decodes. So no reader
ever holds more than a strip of a 200 MB frame.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass

MAGIC = b"\x76\x2f\x31\x01"
# The version field's flags.
TILED, LONG_NAMES, DEEP, MULTIPART = 0x200, 0x400, 0x800, 0x1000
# Scan lines per chunk, by compression number (NO, RLE, ZIPS, ZIP, PIZ, PXR24, B44, B44A,
# DWAA, DWAB); a compression not listed leaves a part's layout unknown.
LINES_PER_CHUNK = {0: 1, 1: 1, 2: 1, 3: 16, 4: 32, 5: 16, 6: 32, 7: 32, 8: 32, 9: 256}


class HeadersCutOff(Exception):
    """The headers or offset tables go on past the bytes given."""


@dataclass(frozen=True)
class Part:
    """One part's header: where it lies in the file and what says how its pixels are stored."""

    start: int  # its first byte
    end: int  # the byte after its terminating zero
    values: dict[str, tuple[int, int]]  # attribute name → (offset, length) of its value
    compression: int | None
    data_window: tuple[int, int, int, int] | None  # xmin, ymin, xmax, ymax
    chunk_count: int | None  # as written; multi-part files must write it
    kind: bytes  # the "type" attribute: b"scanlineimage", b"tiledimage", b"deep...", or b""

    @property
    def lines_per_chunk(self) -> int | None:
        return LINES_PER_CHUNK.get(self.compression if self.compression is not None else -1)

    def scanline_chunks(self) -> int | None:
        """How many chunks a scan-line part of this compression and data window has."""
        lines = self.lines_per_chunk
        if lines is None or self.data_window is None:
            return None
        return math.ceil((self.data_window[3] - self.data_window[1] + 1) / lines)


@dataclass(frozen=True)
class Layout:
    version: int
    parts: tuple[Part, ...]
    # Each part's chunk offsets; None when the layout is one this module does not know (deep
    # data, a tiled part without chunkCount, an unknown compression): then none is listed.
    tables: tuple[tuple[int, ...], ...] | None
    tables_end: int  # the first byte after the offset tables (after the headers when None)

    @property
    def multipart(self) -> bool:
        return bool(self.version & MULTIPART)

    def is_scanline(self, part: int) -> bool:
        """Whether a part is plain scan lines, which `strip_file` can cut into strips."""
        if self.version & (DEEP | TILED) and not self.multipart:
            return False
        kind = self.parts[part].kind
        return kind in (b"", b"scanlineimage") and self.parts[part].lines_per_chunk is not None


def read_layout(data: bytes) -> Layout:
    """The layout of the EXR file that starts with `data`; raises HeadersCutOff when `data`
    ends before the offset tables do, ValueError when it is not EXR."""
    if not data.startswith(MAGIC):
        raise ValueError("not an OpenEXR file")
    try:
        return _read_layout(data)
    except (IndexError, struct.error):
        raise HeadersCutOff from None


def _read_layout(data: bytes) -> Layout:
    version = struct.unpack_from("<I", data, 4)[0]
    multipart, tiled = bool(version & MULTIPART), bool(version & TILED)
    parts, pos = _read_headers(data, multipart)
    if version & DEEP or any(p.kind.startswith(b"deep") for p in parts):
        return Layout(version, parts, None, pos)
    tables: list[tuple[int, ...]] = []
    for part in parts:
        count = part.chunk_count
        if count is None and not tiled:
            count = part.scanline_chunks()
        if count is None:
            return Layout(version, parts, None, pos)
        end = pos + 8 * count
        if end > len(data):
            raise HeadersCutOff
        tables.append(struct.unpack_from(f"<{count}Q", data, pos))
        pos = end
    return Layout(version, parts, tuple(tables), pos)


def _read_headers(data: bytes, multipart: bool) -> tuple[tuple[Part, ...], int]:
    pos, parts = 8, []
    while True:
        start, values = pos, {}
        while data[pos] != 0:
            name_end = data.index(b"\0", pos)
            type_end = data.index(b"\0", name_end + 1)
            length = struct.unpack_from("<i", data, type_end + 1)[0]
            if length < 0 or type_end + 5 + length > len(data):
                raise IndexError("attribute runs past the data")
            values[data[pos:name_end].decode("latin-1")] = (type_end + 5, length)
            pos = type_end + 5 + length
        pos += 1
        parts.append(_part(data, start, pos, values))
        if not multipart:
            return tuple(parts), pos
        if data[pos] == 0:  # an empty header ends a multi-part file's headers
            return tuple(parts), pos + 1


def _part(data: bytes, start: int, end: int, values: dict[str, tuple[int, int]]) -> Part:
    def value(name: str) -> bytes | None:
        if name not in values:
            return None
        offset, length = values[name]
        return data[offset : offset + length]

    compression, window, count = value("compression"), value("dataWindow"), value("chunkCount")
    return Part(
        start=start,
        end=end,
        values=values,
        compression=compression[0] if compression else None,
        data_window=struct.unpack("<4i", window) if window else None,  # type: ignore[arg-type]
        chunk_count=struct.unpack("<i", count)[0] if count else None,
        kind=value("type") or b"",
    )


def chunk_header_size(layout: Layout) -> int:
    """Bytes before a scan-line chunk's data: its part number (multi-part files only), its
    first scan line's y, and its data's length."""
    return 12 if layout.multipart else 8


def strip_file(
    head: bytes, layout: Layout, part: int, first: int, chunks: Sequence[bytes]
) -> bytes:
    """A single-part scan-line EXR holding the chunks `first`, `first + 1`, ... of `part`,
    each given as stored (y, length, data; without a multi-part file's part number): the
    part's header from `head` (the file's first bytes) with its data window cut to those
    chunks' scan lines."""
    p = layout.parts[part]
    lines, window = p.lines_per_chunk, p.data_window
    if lines is None or window is None:
        raise ValueError("the part's scan-line layout is unknown")
    xmin, ymin, xmax, ymax = window
    low = ymin + first * lines
    high = min(ymax, ymin + (first + len(chunks)) * lines - 1)
    header = bytearray(head[p.start : p.end])
    struct.pack_into("<4i", header, p.values["dataWindow"][0] - p.start, xmin, low, xmax, high)
    if "chunkCount" in p.values:
        struct.pack_into("<i", header, p.values["chunkCount"][0] - p.start, len(chunks))
    start = MAGIC + struct.pack("<I", 2 | (layout.version & LONG_NAMES)) + bytes(header)
    offsets, pos = [], len(start) + 8 * len(chunks)
    for chunk in chunks:
        offsets.append(pos)
        pos += len(chunk)
    return b"".join([start, struct.pack(f"<{len(chunks)}Q", *offsets), *chunks])
