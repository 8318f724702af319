"""Collecting the saved copy of the scene with every file it uses (no bpy here).

With blender-asset-tracer (BAT, bundled in ``_vendor/``): it finds textures, libraries and
their own dependencies, and rewrites the paths in copies of the .blend files so that they
resolve inside the job's folder. Without it: the paths Blender reports
(``bpy.utils.blend_paths``) are mirrored below the folder they all share, so that relative
paths still resolve; absolute paths in the scene are then not rewritten, and a Worker finds
those files only where the same path exists.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

VENDOR_DIR = Path(__file__).with_name("_vendor")
PACK_INFO = "pack-info.txt"  # BAT's own notes in the packed folder; not part of the job


class PackError(Exception):
    """The scene cannot be collected; str() is one sentence for the artist."""


@dataclass
class Collected:
    blend: str  # the scene's path inside the job
    files: dict[str, Path]  # path inside the job -> local file to upload
    missing: list[Path] = field(default_factory=list)
    method: str = "bat"  # "bat" or "paths"


def load_bat() -> ModuleType | None:
    """BAT's pack module, preferring the copy bundled in the add-on; None if unavailable."""
    if VENDOR_DIR.is_dir() and "blender_asset_tracer" not in sys.modules:
        vendor = str(VENDOR_DIR)
        if vendor not in sys.path:
            sys.path.insert(0, vendor)
    try:
        pack = importlib.import_module("blender_asset_tracer.pack")
    except ImportError:
        return None
    # BAT warns once per missing file; the add-on reports them together.
    logging.getLogger("blender_asset_tracer").setLevel(logging.ERROR)
    return pack


def bat_location() -> str:
    """Where BAT was imported from (for diagnostics); '' when it is not loaded."""
    module = sys.modules.get("blender_asset_tracer")
    return str(Path(module.__file__).parent) if module and module.__file__ else ""


def collect_with_bat(pack: ModuleType, blend: Path, target: Path) -> Collected:
    """Pack `blend` (which lies in its own folder) and its dependencies into `target`."""
    try:
        with pack.Packer(blend, blend.parent, str(target)) as packer:
            packer.strategise()
            packer.execute()
            missing = sorted(packer.missing_files)
            output = Path(packer.output_path)
    except Exception as exc:
        raise PackError(f"The scene's files could not be collected ({exc}).") from exc
    files = {
        path.relative_to(target).as_posix(): path
        for path in sorted(target.rglob("*"))
        if path.is_file() and path.relative_to(target).as_posix() != PACK_INFO
    }
    return Collected(output.relative_to(target).as_posix(), files, missing, "bat")


def collect_with_paths(blend: Path, original: Path, dependencies: list[Path]) -> Collected:
    """Mirror the scene and its dependencies below the folder they all share.

    `blend` is a copy of `original` saved WITHOUT rebasing its relative paths, and
    `dependencies` are absolute paths from ``bpy.utils.blend_paths(absolute=True)``: placed
    where the original sits relative to them, the copy's relative paths resolve inside the
    job's folder just as they did on the artist's disk.
    """
    original = original.absolute()
    existing = sorted({p.absolute() for p in dependencies if p.is_file()})
    missing = sorted({p for p in dependencies if not p.is_file()})
    try:
        root = Path(os.path.commonpath([str(original.parent), *(str(p) for p in existing)]))
    except ValueError as exc:  # e.g. different drives on Windows
        raise PackError(
            "The scene uses files on different drives, which only blender-asset-tracer can collect."
        ) from exc
    scene = original.relative_to(root).as_posix()
    files = {p.relative_to(root).as_posix(): p for p in existing}
    files[scene] = blend
    return Collected(scene, files, missing, "paths")
