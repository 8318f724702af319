"""Whose fault a failed task is: the file's own, or the machine's that ran it.

Pure: from what the Worker reports (the failure's sentence, the version of Blender that
wrote the file and the version the Worker runs) it says `file` or `machine`.

- A file fault fails the whole job at once with Blender's sentence: every Worker would fail
  the same way, so retrying only blocklists good Workers one after another.
- A machine fault (a crash, out of memory, a missing GPU device, a Blender that would not
  start, a fetch that failed) is retried on another Worker, as before.
"""

from __future__ import annotations

import re
from enum import StrEnum


class Fault(StrEnum):
    FILE = "file"
    MACHINE = "machine"


# Sentences that say the file itself cannot render, on any Worker. Each is what Blender (or
# our child script in Blender, worker/blender_child.py) says; a message that merely quotes
# one of them after a crash does not start with it, so crashes stay the machine's.
FILE_SENTENCES = (
    re.compile(r"^Cannot render, no camera"),  # Blender's own, from bpy.ops.render.render
    re.compile(r"^Could not read blend file "),  # the child, when open_mainfile refuses it
    re.compile(r"^Blend file .* has no scene to render"),
    re.compile(r"^The file's own script "),  # the child: a handler in the .blend raised
    # A tile count the scene's frame cannot be split into (core/tiles.py's sentences, checked
    # by the Worker with the size its Blender reports): every Worker reports the same size.
    re.compile(r"^--tiles \d+ (is more than|cannot split) the \d+x\d+ frame"),
)


# A frame where every pixel has the same value (`flamenco.frame_check`, a job's check_blank):
# the scene renders that on any Worker, so it is the file's. Every other bad frame (missing,
# empty, truncated, the wrong size or format) is the machine's that wrote it.
BLANK_FRAME_WORDS = "every pixel has the same value"
BLANK_FRAME = re.compile(r"^Frame -?\d+ \(.*\) is blank: " + BLANK_FRAME_WORDS)


# A full disk is always the machine's: another Worker has room. The sentence a task fails with.
NO_SPACE = "no space left on device"


def disk_full_sentence(where: str | None = None) -> str:
    """What a task that met a full disk fails with (an OSError ENOSPC on the Worker)."""
    writing = f" while writing {where}" if where else ""
    return f"The Worker's disk is full: {NO_SPACE}{writing}; another Worker will retry the task."


def classify_failure(
    message: str,
    file_version: tuple[int, ...] | None = None,
    blender_version: tuple[int, ...] | None = None,
) -> Fault:
    """Whose fault the failure described by `message` is.

    A file written by a newer Blender than this Worker's is never blamed on the file: an
    old Blender may refuse it ("cannot read") or misread it (a camera lost in translation),
    while a Worker with a newer Blender reads it fine. So that case is the machine's, and
    the task is retried elsewhere; a Worker that keeps failing it is blocklisted, and the
    job's waiting reason then says so.
    """
    text = message.strip()
    if NO_SPACE in text.lower():  # e.g. Blender could not save a frame: not the file's fault
        return Fault.MACHINE
    if BLANK_FRAME.search(text):
        return Fault.FILE
    if not any(pattern.search(text) for pattern in FILE_SENTENCES):
        return Fault.MACHINE
    if _newer(file_version, blender_version):
        return Fault.MACHINE
    return Fault.FILE


def _newer(file_version: tuple[int, ...] | None, blender_version: tuple[int, ...] | None) -> bool:
    """Whether the file was written by a newer Blender (major and minor: files record no
    patch level) than this one; False when either is unknown."""
    if file_version is None or blender_version is None:
        return False
    return (*file_version, 0)[:2] > (*blender_version, 0)[:2]
