"""Collecting a scene with everything it uses, with paths that resolve inside the job.

Blender's own tracer (blender-asset-tracer) finds image textures, linked libraries and
their own dependencies, sequences and caches, and rewrites the paths in copies of the .blend
files so that they are relative to the job's folder. The Worker then finds every file where
the scene expects it, without any shared disk.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

from blender_asset_tracer.pack import Packer

log = logging.getLogger("flamenco.packing")
# The tracer warns about each missing file on its own; pack_scene reports them as one list.
logging.getLogger("blender_asset_tracer").setLevel(logging.ERROR)

PACK_INFO = "pack-info.txt"


class PackError(ValueError):
    """The scene cannot be collected; the message says why in one sentence."""


@dataclass
class PackedScene:
    folder: tempfile.TemporaryDirectory[str]  # holds the rewritten copies until uploaded
    blend: str  # the scene's path inside the job
    files: dict[str, Path]  # path inside the job -> local file to upload
    missing: list[Path]

    def close(self) -> None:
        self.folder.cleanup()


def pack_scene(blend: Path) -> PackedScene:
    """Copy the scene and its dependencies into a temporary job folder, paths rewritten."""
    blend = blend.absolute()
    if not blend.is_file():
        raise PackError(f"The scene '{blend}' does not exist.")
    folder = tempfile.TemporaryDirectory(prefix="flamenco-pack-")
    target = Path(folder.name) / "job"
    try:
        with Packer(blend, blend.parent, str(target)) as packer:
            packer.strategise()
            packer.execute()
            missing = sorted(packer.missing_files)
            output = Path(packer.output_path)
    except Exception as exc:
        folder.cleanup()
        raise PackError(
            f"The file '{blend.name}' cannot be read as a .blend file ({exc})."
        ) from exc
    files = {
        path.relative_to(target).as_posix(): path
        for path in sorted(target.rglob("*"))
        if path.is_file() and path.relative_to(target).as_posix() != PACK_INFO
    }
    return PackedScene(folder, output.relative_to(target).as_posix(), files, missing)
