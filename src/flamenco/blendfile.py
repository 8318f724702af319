"""Recognise .blend files from their first bytes, without Blender (and read the render size
of the file's scene, for tiles).

The Server refuses a job whose scene is not a .blend before any Worker wastes a Blender
start on it. Blender writes plain, gzip- or zstd-compressed files.
"""

from __future__ import annotations

import re
import zlib
from pathlib import Path

import zstandard

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
HEAD_BYTES = 64


def _decompressed_head(data: bytes) -> bytes:
    if data.startswith(GZIP_MAGIC):
        return zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(data, HEAD_BYTES)
    if data.startswith(ZSTD_MAGIC):
        reader = zstandard.ZstdDecompressor().stream_reader(data)
        return reader.read(HEAD_BYTES)
    return data[:HEAD_BYTES]


def _first_block_code(head: bytes) -> bytes:
    # Blender up to 4.x: 12-byte header "BLENDER-v279"; 5.0: "BLENDER17-01v0500" (17 bytes).
    header_len = 17 if head[7:9].isdigit() else 12
    return head[header_len : header_len + 4]


def blend_problem(path: Path, name: str) -> str | None:
    """Return why the file is not a usable .blend, or None when it looks like one."""
    with path.open("rb") as f:
        data = f.read(1024 * 1024)
    try:
        head = _decompressed_head(data)
    except (zlib.error, zstandard.ZstdError):
        return f"The file '{name}' is compressed but its contents cannot be read."
    if not head.startswith(b"BLENDER"):
        return f"The file '{name}' is not a .blend file."
    if _first_block_code(head) in (b"ENDB", b""):
        return f"The file '{name}' is a .blend file without any data blocks."
    return None


_VERSION_IN_HEADER = re.compile(rb"^BLENDER(?:[-_][vV](\d)(\d\d)|\d\d-\d\d[vV](\d\d)(\d\d))")


def blend_version(path: Path) -> tuple[int, int] | None:
    """The (major, minor) version of the Blender that wrote the file, from its header
    ("BLENDER-v279" is 2.79, "BLENDER17-01v0500" is 5.0); None when it is not readable."""
    try:
        with path.open("rb") as f:
            head = _decompressed_head(f.read(1024 * 1024))
    except (OSError, zlib.error, zstandard.ZstdError):
        return None
    match = _VERSION_IN_HEADER.match(head)
    if match is None:
        return None
    major, minor = (g for g in match.groups() if g is not None)
    return int(major), int(minor)


def blend_version_text(path: Path) -> str | None:
    """The version that wrote the file as Blender names it ("2.79", "5.0"), or None."""
    version = blend_version(path)
    return None if version is None else f"{version[0]}.{version[1]}"


def scene_resolution(path: Path) -> tuple[int, int] | None:
    """The size in pixels that Blender renders the file's current scene at (resolution times
    its percentage, as worker/blender_child.effective_resolution counts it), read with
    blender-asset-tracer without Blender; None when the file cannot be read so."""
    # Imported here: reading the DNA is only needed for tiles, and BAT's import is not free.
    from blender_asset_tracer import blendfile as bat_blendfile

    try:
        blend = bat_blendfile.BlendFile(path)
    except Exception:  # any file BAT cannot parse: the Worker checks the size instead
        return None
    try:
        scene = blend.find_blocks_from_code(b"GLOB")[0].get_pointer(b"curscene")
        width, height = (int(scene.get((b"r", field))) for field in (b"xsch", b"ysch"))
        percentage = int(scene.get((b"r", b"size")))
    except Exception:  # no GLOB block or scene, or a layout BAT does not know
        return None
    finally:
        blend.close()
    return width * percentage // 100, height * percentage // 100
