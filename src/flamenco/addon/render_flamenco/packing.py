"""Collecting the saved copy of the scene with every file it uses (no bpy here).

With blender-asset-tracer (BAT, bundled in ``_vendor/``): it finds textures, libraries and
their own dependencies, and works out where each lands inside the job's folder. Nothing is
copied: only the .blend files whose paths BAT rewrites are written, into a temporary folder
of BAT's; every other file is read where it is, for hashing and upload. The CLI
(`flamenco.packing`) collects with the same code. Without BAT: the paths Blender reports
(``bpy.utils.blend_paths``) are mirrored below the folder they all share, so that relative
paths still resolve; absolute paths in the scene are then not rewritten, and a Worker finds
those files only where the same path exists.
"""

from __future__ import annotations

import functools
import importlib
import logging
import os
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from types import ModuleType
from typing import Any

VENDOR_DIR = Path(__file__).with_name("_vendor")
# BAT places files relative to a target folder; this one is only used to compute paths in the
# job, and nothing is ever written there.
PATHS_ONLY_TARGET = Path(tempfile.gettempdir()) / "flamenco-job-paths-only"


class PackError(Exception):
    """The scene cannot be collected; str() is one sentence for the artist."""


@dataclass
class Collected:
    blend: str  # the scene's path inside the job
    files: dict[str, Path]  # path inside the job -> local file to upload
    missing: list[Path] = field(default_factory=list)
    method: str = "bat"  # "bat" or "paths"
    # Paths in the job whose file was written for this submission (BAT's rewritten .blend
    # files, in a temporary folder): hashed afresh, never remembered by the hash cache.
    written: set[str] = field(default_factory=set)
    cleanup: Callable[[], None] | None = None  # removes the written files

    def close(self) -> None:
        if self.cleanup is not None:
            self.cleanup()
            self.cleanup = None


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


@functools.cache
def _in_place_packer(pack: ModuleType) -> type[Any]:
    """BAT's Packer, told to plan the job's folder and rewrite .blend files but copy nothing.

    BAT's execute() writes the rewritten .blend files into its own temporary folder, then hands
    every file to a copier thread. Here that hand-over only records, for each path in the job,
    the file to read it from; no thread starts and no texture is read.
    """

    class InPlacePacker(pack.Packer):  # type: ignore[misc,name-defined]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.sources: dict[PurePath, Path] = {}

        def _start_file_transferrer(self) -> None:
            pass

        def _perform_file_transfer(self) -> None:
            for asset_path, action in self._actions.items():
                self._check_aborted()
                self._copy_asset_and_deps(asset_path, action)

        def _send_to_target(
            self, asset_path: Path, target: PurePath, may_move: bool = False
        ) -> None:
            self.sources[PurePath(target)] = Path(asset_path)

    return InPlacePacker


def trace_with_bat(pack: ModuleType, blend: Path) -> Collected:
    """The scene and every file it uses, read in place; raises whatever BAT raises.

    Only the .blend files whose paths need rewriting are written (`Collected.written`), in a
    temporary folder that `Collected.close()` removes.
    """
    packer = _in_place_packer(pack)(blend, blend.parent, str(PATHS_ONLY_TARGET))
    try:
        packer.strategise()
        packer.execute()
        root = Path(packer._target_path)
        files = {
            PurePath(target).relative_to(root).as_posix(): source
            for target, source in sorted(packer.sources.items())
        }
        scratch = Path(packer._rewrite_in)
        written = {rel for rel, source in files.items() if source.parent == scratch}
        blend_in_job = PurePath(packer.output_path).relative_to(root).as_posix()
        missing = sorted(packer.missing_files)
    except BaseException:
        packer.close()
        raise
    return Collected(blend_in_job, files, missing, "bat", written, packer.close)


def collect_with_bat(pack: ModuleType, blend: Path) -> Collected:
    """`trace_with_bat`, its failure told in one sentence for the artist."""
    try:
        return trace_with_bat(pack, blend)
    except Exception as exc:
        raise PackError(f"The scene's files could not be collected ({exc}).") from exc


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
