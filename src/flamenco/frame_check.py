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

import struct
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import OpenEXR
from PIL import Image

from flamenco.core.compiler import FROM_SCENE, read_output_format
from flamenco.core.exr_layout import TILED, HeadersCutOff
from flamenco.core.faults import BLANK_FRAME_WORDS
from flamenco.errors import Unprocessable
from flamenco.exr_strips import beauty_strips, read_exr_layout
from flamenco.images import EXR_MAGIC, image_size

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


# ---- EXR: the headers and offset tables (core/exr_layout.py), then the last chunk's length


def _exr_incomplete(path: Path, size: int) -> str | None:
    OpenEXR.File(str(path), header_only=True)  # the library decodes the headers, or raises
    try:
        _, layout = read_exr_layout(path)
    except HeadersCutOff:
        return "its headers or chunk offset table are cut off"
    if layout.tables is None:
        return None  # deep data, or a layout this check does not know: the header decoded
    table = [offset for offsets in layout.tables for offset in offsets]
    if any(offset < layout.tables_end or offset >= size for offset in table):
        return "its chunk offset table points past the end of the file, or was never written"
    last = max(table)
    with open(path, "rb") as f:
        f.seek(last)
        chunk_header = f.read(24)
    if len(chunk_header) < 8:
        return "its last chunk is cut off"
    head, tiled = 0, bool(layout.version & TILED)
    if layout.multipart:
        part = struct.unpack_from("<i", chunk_header, 0)[0]
        if not 0 <= part < len(layout.parts):
            return "its last chunk names a part the file does not have"
        tiled = layout.parts[part].kind == b"tiledimage"
        head = 4
    head += 16 if tiled else 4  # tile coordinates and levels, or the first scan line
    if len(chunk_header) < head + 4:
        return "its last chunk is cut off"
    end = last + head + 4 + struct.unpack_from("<i", chunk_header, head)[0]
    if end > size:
        return f"its last chunk needs {end} bytes, the file has {size}"
    return None


def _is_blank(path: Path, kind: str) -> bool:
    if kind == "EXR":  # a strip at a time: a big frame is never whole in memory
        first = None
        for strip in beauty_strips(path):
            flat = strip.reshape(-1, strip.shape[2] if strip.ndim == 3 else 1)
            first = flat[0].copy() if first is None else first
            if not np.all(flat == first):
                return False
        return True
    with Image.open(path) as img:
        extrema, mode = img.getextrema(), img.mode
    if not isinstance(extrema[0], tuple):  # one band: (min, max)
        extrema = (extrema,)  # type: ignore[assignment]
    # Blender dithers what it writes as integers (dither_intensity, 1 by default): a black
    # render comes out as 0s and 1s. One 8-bit step either way is still one value.
    step = 0 if mode == "F" else 257 if mode.startswith("I") else 1
    return all(high - low <= step for low, high in extrema)  # type: ignore[misc]
