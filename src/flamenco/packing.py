"""Collecting a scene with everything it uses, with paths that resolve inside the job.

Blender's own tracer (blender-asset-tracer) finds image textures, linked libraries and
their own dependencies, sequences and caches, and works out where each lands in the job's
folder. Nothing is copied: the .blend files whose paths must change are rewritten into a
temporary folder, every other file is hashed and uploaded from where it is. The Worker then
finds every file where the scene expects it, without any shared disk.

The tracing itself is the add-on's (`render_flamenco/packing.py`, shipped in its zip), so
the CLI and the add-on send the same files.
"""

from __future__ import annotations

import logging
from pathlib import Path

from blender_asset_tracer import pack as bat_pack

from flamenco.addon.render_flamenco.packing import Collected, trace_with_bat

log = logging.getLogger("flamenco.packing")
# The tracer warns about each missing file on its own; pack_scene reports them as one list.
logging.getLogger("blender_asset_tracer").setLevel(logging.ERROR)

__all__ = ["Collected", "PackError", "pack_scene"]


class PackError(ValueError):
    """The scene cannot be collected; the message says why in one sentence."""


def pack_scene(blend: Path) -> Collected:
    """The scene and its dependencies, paths in the job -> files to read; close() it after use
    (it removes the rewritten .blend files)."""
    blend = blend.absolute()
    if not blend.is_file():
        raise PackError(f"The scene '{blend}' does not exist.")
    try:
        return _pack(blend)
    except PackError as exc:
        if not _tracer_lost_its_files(exc):
            raise
        # Rarely, with several packs running on the machine, the tracer finds the files of
        # its own temporary folder gone (cause not found).
        log.warning("packing %s: the tracer lost its temporary files; packing again", blend)
        return _pack(blend)


def _tracer_lost_its_files(exc: PackError) -> bool:
    cause = exc.__cause__
    return isinstance(cause, FileNotFoundError) and "-batpack" in str(cause.filename or "")


def _pack(blend: Path) -> Collected:
    try:
        return trace_with_bat(bat_pack, blend)
    except Exception as exc:
        raise PackError(
            f"The file '{blend.name}' cannot be read as a .blend file ({exc})."
        ) from exc
