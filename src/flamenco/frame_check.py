"""Is a rendered frame a whole picture of the job? Checked by the Worker before it reports a
frame and by the Server when it arrives, with the same readers as the viewer (`images.py`:
Pillow, and OpenEXR for EXR).

The check reads headers and the end of the file, never the pixels of a big EXR: it exists, is
not empty, its content is the kind its extension says (PNG, JPEG, TIFF, EXR) and the kind the
job renders, its header decodes, the file is whole (PNG's IEND chunk, JPEG's end marker,
every TIFF strip or tile, every EXR chunk in its offset table), and it has the job's size.
Only with `check_blank` are the pixels decoded, to refuse a frame where every pixel has the
same value (an EXR's beauty layer exactly; integer formats give or take one 8-bit step, which
is Blender's dither). Formats other than these four are checked for existence,
size and extension only. A bad frame raises `BadFrame` (422 at the Server) with one sentence
naming the frame and what is wrong; `core/faults.py` says whose fault it is.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import OpenEXR
from PIL import Image

from flamenco.core.compiler import FROM_SCENE, read_output_format
from flamenco.core.faults import BLANK_FRAME_WORDS
from flamenco.errors import Unprocessable
from flamenco.images import EXR_MAGIC, beauty_pixels, image_size

# Blender's file format names → the extension Blender gives them.
BLENDER_EXTENSIONS = {
    "PNG": ".png",
    "JPEG": ".jpg",
    "TIFF": ".tif",
    "OPEN_EXR": ".exr",
    "OPEN_EXR_MULTILAYER": ".exr",
    "BMP": ".bmp",
    "IRIS": ".rgb",
    "JPEG2000": ".jp2",
    "TARGA": ".tga",
    "TARGA_RAW": ".tga",
    "CINEON": ".cin",
    "DPX": ".dpx",
    "HDR": ".hdr",
    "WEBP": ".webp",
}
# The kinds whose content is checked, by extension.
KIND_OF_EXTENSION = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG"}
KIND_OF_EXTENSION |= {".tif": "TIFF", ".tiff": "TIFF", ".exr": "EXR"}
_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (EXR_MAGIC, "EXR"),
)
PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"
JPEG_END = b"\xff\xd9"
# Scan lines per EXR chunk, by compression; a compression not listed is not checked for
# completeness (its header still is).
_EXR_LINES = {
    int(OpenEXR.NO_COMPRESSION): 1,
    int(OpenEXR.RLE_COMPRESSION): 1,
    int(OpenEXR.ZIPS_COMPRESSION): 1,
    int(OpenEXR.ZIP_COMPRESSION): 16,
    int(OpenEXR.PIZ_COMPRESSION): 32,
    int(OpenEXR.PXR24_COMPRESSION): 16,
    int(OpenEXR.B44_COMPRESSION): 32,
    int(OpenEXR.B44A_COMPRESSION): 32,
    int(OpenEXR.DWAA_COMPRESSION): 32,
    int(OpenEXR.DWAB_COMPRESSION): 256,
}
_EXR_TILED, _EXR_DEEP, _EXR_MULTIPART = 0x200, 0x800, 0x1000


class BadFrame(Unprocessable):
    """A frame that must not count; its message is the sentence the task fails with."""


@dataclass(frozen=True)
class FrameExpectation:
    """What the job's frames must be; None where it is not known (the Server knows no size)."""

    size: tuple[int, int] | None = None  # width, height in pixels
    file_format: str | None = None  # Blender's name (PNG, OPEN_EXR, ...)
    check_blank: bool = False


def job_expectation(settings: Mapping[str, Any]) -> FrameExpectation:
    """What the Server knows a job's frames must be, from its settings: the output format it
    names (none for the scene's own) and check_blank; not the size, which only Blender knows."""
    named = read_output_format(settings)
    return FrameExpectation(
        file_format=None if named == FROM_SCENE else named,
        check_blank=settings.get("check_blank") is True,
    )


def check_frame(path: Path, name: str, frame: int, expect: FrameExpectation) -> None:
    """Raise BadFrame, saying why, unless the file at `path` (named `name`) is a whole frame
    of the expected kind and size."""
    label = f"Frame {frame} ({name})"
    try:
        size_bytes = path.stat().st_size
    except FileNotFoundError:
        raise BadFrame(f"{label} does not exist.") from None
    if size_bytes == 0:
        raise BadFrame(f"{label} is empty (0 bytes).")
    extension = PurePosixPath(name).suffix.lower()
    _check_format(label, extension, expect.file_format)
    kind = KIND_OF_EXTENSION.get(extension)
    if kind is None:
        return
    found = _content_kind(path)
    if found != kind:
        what = f"{found} data" if found else "no picture Flamenco knows"
        raise BadFrame(f"{label} holds {what}, not the {kind} its name says.")
    try:
        width, height = image_size(path)
        problem = _incomplete(path, kind, size_bytes)
    except Exception as exc:  # any reader's refusal means the same: it does not decode
        raise BadFrame(f"{label} does not decode as {kind}: {_reason(exc)}.") from None
    if problem:
        raise BadFrame(f"{label} is truncated: {problem}.")
    if expect.size is not None and (width, height) != tuple(expect.size):
        want_w, want_h = expect.size
        raise BadFrame(
            f"{label} is {width}x{height} pixels, but the job renders {want_w}x{want_h}."
        )
    if expect.check_blank and _is_blank(path, kind):
        raise BadFrame(f"{label} is blank: {BLANK_FRAME_WORDS}.")


def _check_format(label: str, extension: str, file_format: str | None) -> None:
    wanted = BLENDER_EXTENSIONS.get(file_format or "")
    if wanted is None:
        return
    same = {
        wanted,
        *(e for e, k in KIND_OF_EXTENSION.items() if k == KIND_OF_EXTENSION.get(wanted)),
    }
    if extension not in same:
        raise BadFrame(f"{label} is not {file_format}, the job's output format.")


def _content_kind(path: Path) -> str | None:
    with open(path, "rb") as f:
        start = f.read(8)
    return next((kind for magic, kind in _MAGIC if start.startswith(magic)), None)


def _reason(exc: Exception) -> str:
    return (str(exc).strip().rstrip(".") or type(exc).__name__).splitlines()[0]


def _incomplete(path: Path, kind: str, size: int) -> str | None:
    """What says the file stops short, or None when it is whole."""
    if kind == "PNG":
        return None if _tail(path, len(PNG_END)) == PNG_END else "the PNG has no IEND chunk"
    if kind == "JPEG":
        end = _tail(path, 64).rstrip(b"\x00")
        return None if end.endswith(JPEG_END) else "the JPEG has no end-of-image marker"
    if kind == "TIFF":
        return _tiff_incomplete(path, size)
    return _exr_incomplete(path, size)


def _tail(path: Path, n: int) -> bytes:
    with open(path, "rb") as f:
        f.seek(max(0, path.stat().st_size - n))
        return f.read(n)


def _tiff_incomplete(path: Path, size: int) -> str | None:
    with Image.open(path) as img:
        tags = img.tag_v2  # type: ignore[attr-defined]
        offsets = tags.get(324) or tags.get(273) or ()  # TileOffsets, else StripOffsets
        counts = tags.get(325) or tags.get(279) or ()  # TileByteCounts, else StripByteCounts
    if isinstance(offsets, int):
        offsets, counts = (offsets,), (counts,)
    for offset, count in zip(offsets, counts, strict=False):
        if offset + count > size:
            return f"the TIFF's image data runs to byte {offset + count}, the file has {size}"
    return None


# ---- EXR: the headers as the format's specification lays them out, then the offset tables


# How much of an EXR's start to read for its headers and offset tables: a little first, more
# only for files with very many parts or chunks; never the pixels of a big frame.
_EXR_READS = (1 << 20, 64 << 20)


def _exr_incomplete(path: Path, size: int) -> str | None:
    OpenEXR.File(str(path), header_only=True)  # the library decodes the headers, or raises
    for amount in _EXR_READS:
        with open(path, "rb") as f:
            data = f.read(min(size, amount))
        try:
            return _exr_layout_problem(path, data, size)
        except _ReadMore:
            if len(data) == size:
                break
    return "its headers or chunk offset table are cut off"


class _ReadMore(Exception):
    """The headers and offset tables go on past what was read."""


def _exr_layout_problem(path: Path, data: bytes, size: int) -> str | None:
    try:
        return _exr_offsets_problem(path, data, size)
    except (IndexError, ValueError, struct.error):
        raise _ReadMore from None


def _exr_offsets_problem(path: Path, data: bytes, size: int) -> str | None:
    version = struct.unpack_from("<I", data, 4)[0]
    multipart, tiled = bool(version & _EXR_MULTIPART), bool(version & _EXR_TILED)
    headers, pos = _exr_headers(data, multipart)
    if version & _EXR_DEEP or any(h.get("type", b"").startswith(b"deep") for h in headers):
        return None  # deep data: the header decoded, that is all
    table: list[int] = []
    for header in headers:
        count = header.get("chunkCount")
        if count is None:
            count = _scanline_chunks(header) if not tiled else None
        if count is None:
            return None  # a layout this check does not know: the header decoded, that is all
        end = pos + 8 * count
        if end > len(data):
            raise _ReadMore
        table += struct.unpack_from(f"<{count}Q", data, pos)
        pos = end
    if any(offset < pos or offset >= size for offset in table):
        return "its chunk offset table points past the end of the file, or was never written"
    last = max(table)
    with open(path, "rb") as f:
        f.seek(last)
        chunk_header = f.read(24)
    if len(chunk_header) < 8:
        return "its last chunk is cut off"
    head = 0
    if multipart:
        part = struct.unpack_from("<i", chunk_header, 0)[0]
        if not 0 <= part < len(headers):
            return "its last chunk names a part the file does not have"
        tiled = headers[part].get("type") == b"tiledimage"
        head = 4
    head += 16 if tiled else 4  # tile coordinates and levels, or the first scan line
    if len(chunk_header) < head + 4:
        return "its last chunk is cut off"
    end = last + head + 4 + struct.unpack_from("<i", chunk_header, head)[0]
    if end > size:
        return f"its last chunk needs {end} bytes, the file has {size}"
    return None


def _exr_headers(data: bytes, multipart: bool) -> tuple[list[dict[str, object]], int]:
    """Each part's attributes that say how many chunks it has; and where the headers end."""
    pos, headers = 8, []
    while True:
        header: dict[str, object] = {}
        while data[pos] != 0:
            name_end = data.index(b"\0", pos)
            type_end = data.index(b"\0", name_end + 1)
            name = data[pos:name_end].decode("latin-1")
            length = struct.unpack_from("<i", data, type_end + 1)[0]
            value = data[type_end + 5 : type_end + 5 + length]
            if name == "chunkCount":
                header[name] = struct.unpack("<i", value)[0]
            elif name == "compression":
                header[name] = value[0]
            elif name == "dataWindow":
                header[name] = struct.unpack("<4i", value)
            elif name == "type":
                header[name] = value
            pos = type_end + 5 + length
        pos += 1
        headers.append(header)
        if not multipart:
            return headers, pos
        if data[pos] == 0:  # an empty header ends a multi-part file's headers
            return headers, pos + 1


def _scanline_chunks(header: dict[str, object]) -> int | None:
    lines = _EXR_LINES.get(int(header.get("compression", -1)))  # type: ignore[call-overload]
    window = header.get("dataWindow")
    if lines is None or not isinstance(window, tuple):
        return None
    return math.ceil((window[3] - window[1] + 1) / lines)


def _is_blank(path: Path, kind: str) -> bool:
    if kind == "EXR":
        pixels = beauty_pixels(OpenEXR.File(str(path)))
        flat = pixels.reshape(-1, pixels.shape[2] if pixels.ndim == 3 else 1)
        return bool(np.all(flat == flat[0]))
    with Image.open(path) as img:
        extrema, mode = img.getextrema(), img.mode
    if not isinstance(extrema[0], tuple):  # one band: (min, max)
        extrema = (extrema,)  # type: ignore[assignment]
    # Blender dithers what it writes as integers (dither_intensity, 1 by default): a black
    # render comes out as 0s and 1s. One 8-bit step either way is still one value.
    step = 0 if mode == "F" else 257 if mode.startswith("I") else 1
    return all(high - low <= step for low, high in extrema)  # type: ignore[misc]
