"""flamenco.core.exr_layout on files the OpenEXR library wrote: each part's header, the chunk
offset tables, and strips cut out as single-part files that the library decodes to the same
rows."""

from __future__ import annotations

import io
import math
import struct

import numpy as np
import OpenEXR
import pytest

from flamenco.core.exr_layout import HeadersCutOff, read_layout, strip_file

HEIGHT, WIDTH = 70, 9


def exr_bytes(parts: list[tuple[int, dict[str, np.ndarray]]], tiled: bool = False) -> bytes:
    """An EXR file's bytes; one part per (compression, channels)."""
    kind = OpenEXR.tiledimage if tiled else OpenEXR.scanlineimage
    headers: list[dict[str, object]] = [
        {"compression": OpenEXR.Compression(c), "type": kind} for c, _ in parts
    ]
    if tiled:
        tiles = OpenEXR.TileDescription()
        tiles.xSize = tiles.ySize = 16
        for header in headers:
            header["tiles"] = tiles
    if len(parts) == 1:
        exr = OpenEXR.File(headers[0], dict(parts[0][1]))  # it fills in the dict it gets
    else:
        made = [
            OpenEXR.Part(header, dict(channels), name=f"part{i}")
            for i, (header, (_, channels)) in enumerate(zip(headers, parts, strict=True))
        ]
        exr = OpenEXR.File(made)
    out = io.BytesIO()
    exr.write(out)
    return out.getvalue()


def pixels(seed: int, channels: int, dtype: type = np.float32) -> np.ndarray:
    shape = (HEIGHT, WIDTH, channels) if channels > 1 else (HEIGHT, WIDTH)
    return np.random.default_rng(seed).random(shape).astype(dtype)


NO, ZIPS, ZIP, PIZ, DWAB = 0, 2, 3, 4, 9
LINES = {NO: 1, ZIPS: 1, ZIP: 16, PIZ: 32, DWAB: 256}


@pytest.mark.parametrize(
    "parts",
    [
        [(NO, {"RGBA": pixels(1, 4)})],
        [(ZIP, {"RGB": pixels(2, 3, np.float16)})],
        [(PIZ, {"Y": pixels(3, 1)})],
        [(DWAB, {"RGBA": pixels(4, 4, np.float16)})],
        # multi-part, as Blender 5 writes a multilayer EXR: one part per pass
        [(ZIPS, {"V.Depth.Z": pixels(5, 1)}), (ZIP, {"V.Combined": pixels(6, 4, np.float16)})],
    ],
)
def test_parts_tables_and_strips_of_what_openexr_writes(
    parts: list[tuple[int, dict[str, np.ndarray]]],
) -> None:
    data = exr_bytes(parts)
    layout = read_layout(data)

    assert layout.multipart == (len(parts) > 1)
    assert layout.tables is not None
    for number, (compression, channels) in enumerate(parts):
        part = layout.parts[number]
        assert (part.compression, part.data_window) == (compression, (0, 0, WIDTH - 1, HEIGHT - 1))
        assert len(layout.tables[number]) == math.ceil(HEIGHT / LINES[compression])
        assert all(layout.tables_end <= at < len(data) for at in layout.tables[number])
        assert layout.is_scanline(number)

        # the part cut into strips of two chunks: each decodes to its rows of the whole
        (name, whole), lines = next(iter(channels.items())), LINES[compression]
        name = {"RGBA": "RGBA", "RGB": "RGB"}.get(name, name)
        table, skip = layout.tables[number], 4 if layout.multipart else 0
        rows: list[np.ndarray] = []
        for first in range(0, len(table), 2):
            chunks = []
            for at in table[first : first + 2]:
                length = struct.unpack_from("<i", data, at + skip + 4)[0]
                chunks.append(data[at + skip : at + skip + 8 + length])
            strip = OpenEXR.File(io.BytesIO(strip_file(data, layout, number, first, chunks)))
            got = strip.parts[0].channels[name].pixels
            assert got.shape[0] == min(2 * lines, HEIGHT - first * lines)
            rows.append(got)
        assert np.array_equal(np.concatenate(rows), whole)


@pytest.mark.parametrize(
    ("cut", "raises"),
    [
        (lambda d: d[:40], HeadersCutOff),  # inside the header
        (lambda d: d[: read_layout(d).tables_end - 3], HeadersCutOff),  # inside the table
        (lambda d: b"\x89PNG\r\n\x1a\n" + d[8:], ValueError),  # not EXR
    ],
)
def test_what_is_not_a_whole_head_is_refused(cut, raises) -> None:  # type: ignore[no-untyped-def]
    data = exr_bytes([(ZIP, {"RGBA": pixels(7, 4)})])
    with pytest.raises(raises):
        read_layout(cut(data))


def test_a_tiled_part_is_listed_but_not_cut_into_strips() -> None:
    data = exr_bytes([(ZIP, {"RGBA": pixels(8, 4)})], tiled=True)
    layout = read_layout(data)
    assert layout.parts[0].kind == b"tiledimage"
    assert not layout.is_scanline(0)
