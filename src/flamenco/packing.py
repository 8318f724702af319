"""Collecting a scene with everything it uses, with paths that resolve inside the job.

Blender's own tracer (blender-asset-tracer) finds image textures, linked libraries and
their own dependencies, sequences and caches, and rewrites the paths in copies of the .blend
files so that they are relative to the job's folder. The Worker then finds every file where
the scene expects it, without any shared disk.
"""

from __future__ import annotations

import logging
import queue
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from blender_asset_tracer.pack import Packer
from blender_asset_tracer.pack.filesystem import FileCopier

log = logging.getLogger("flamenco.packing")
# The tracer warns about each missing file on its own; pack_scene reports them as one list.
logging.getLogger("blender_asset_tracer").setLevel(logging.ERROR)

PACK_INFO = "pack-info.txt"


class PackError(ValueError):
    """The scene cannot be collected; the message says why in one sentence."""


POLL_S = 0.02


class _PromptCopier(FileCopier):
    """The tracer's copier, polling its queue every 20 ms instead of every 500 ms.

    The stock one idles up to a second per submission (after its last file, and while
    joining), which is most of the wait for a small scene.
    """

    def iter_queue(self) -> Iterator[Any]:
        while not (self._abort.is_set() or self.has_error):
            try:
                src, dst, action = self.queue.get(timeout=POLL_S)
            except queue.Empty:
                if self.done.is_set():
                    return
                continue
            self.progress_cb.transfer_file(src, dst)
            yield src, dst, action

    def join(self, timeout: float | None = None) -> None:
        deadline = time.monotonic() + timeout if timeout else float("inf")
        while self.is_alive() and time.monotonic() < deadline:
            self.progress_cb.flush(timeout=POLL_S)


class _Packer(Packer):
    copier: _PromptCopier | None = None

    def _create_file_transferer(self) -> FileCopier:
        self.copier = _PromptCopier()
        return self.copier

    def stop_copier(self) -> None:
        """After a failure: the copier thread would otherwise wait for files forever and keep
        the process from exiting."""
        if self.copier is not None and self.copier.is_alive():
            self.copier.abort()


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


def _pack(blend: Path) -> PackedScene:
    folder = tempfile.TemporaryDirectory(prefix="flamenco-pack-")
    target = Path(folder.name) / "job"
    try:
        with _Packer(blend, blend.parent, str(target)) as packer:
            try:
                packer.strategise()
                packer.execute()
            finally:
                packer.stop_copier()
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
