"""Placing a job's outputs (frames, artifacts) as plain files into its output folder.

A file is copied under a temporary name of our own (`blobs.temp_beside`), never one made
from the user's file name, so a name that just fits the file system still works and a half-written
file never carries the real name; it is renamed into place when complete. An OSError becomes
an error with one sentence (`errors.writing`), and the temporary file is removed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

from flamenco.blobs import safe_join, temp_beside
from flamenco.errors import writing


def place_output(source: Path, output_dir: Path, name: str, what: str) -> Path:
    """Copy `source` to `output_dir/name`, whole or not at all; return where it is."""
    with writing(what):
        dest = safe_join(output_dir, name)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = temp_beside(dest)
        try:
            shutil.copyfile(source, tmp)
            os.replace(tmp, dest)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
            raise
    return dest


def remove_output(path: Path) -> None:
    """Take back a placed file whose row could not be committed (its job was deleted
    meanwhile), and its folder when that is left empty."""
    with contextlib.suppress(OSError):
        path.unlink(missing_ok=True)
        path.parent.rmdir()
