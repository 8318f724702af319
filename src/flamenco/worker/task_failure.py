"""How a failed task is reported: its one sentence, and whose fault it is (`core/faults.py`)."""

from __future__ import annotations

import errno
from collections.abc import Callable
from pathlib import Path

from flamenco.blendfile import blend_version
from flamenco.client import ApiError, Unreachable
from flamenco.commands import CommandFailed
from flamenco.core.faults import Fault, classify_failure, disk_full_sentence
from flamenco.core.matching import parse_version
from flamenco.core.names import UnsafePath
from flamenco.frame_check import BadFrame
from flamenco.worker.blender import BlenderInstall
from flamenco.worker.warm_blender import BlenderFailed, BlenderTerminated

# What a task may fail with in the normal course of things, said in one sentence; anything
# else is a command's bug, whose traceback goes to the Worker's log too.
FORESEEN_FAILURES = (
    CommandFailed,
    BlenderFailed,
    ApiError,
    Unreachable,
    OSError,
    UnsafePath,
    BadFrame,
)


def failure_sentence(exc: Exception, hung_s: float | None = None) -> str:
    """What the task failed with; `hung_s`: it was stopped after that long without a sign
    of life."""
    if hung_s is not None:
        return f"Blender showed no sign of life for {hung_s:.0f} s and was stopped."
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return disk_full_sentence(exc.filename)
    return getattr(exc, "message", None) or str(exc) or type(exc).__name__


Versions = tuple[tuple[int, ...] | None, tuple[int, ...] | None]


def versions(blend: Path, install_for: Callable[[Path], BlenderInstall]) -> Versions:
    """The versions of the Blender that saved the job's file and of the one that opens it
    here; None where unknown."""
    try:
        ours = parse_version(install_for(blend).version)
    except (ValueError, OSError):
        ours = None
    return blend_version(blend), ours


def failure_fault(
    exc: Exception, message: str, hung: bool, blender_versions: Callable[[], Versions]
) -> Fault:
    """Whose fault the failure is: a command may say; else only what Blender said about the
    job's file can be the file's (unless the file is newer than the Blender that read it,
    `blender_versions`: file's, ours); a hung run, a fetch or an OSError is the machine's. A
    bad frame is the machine's, unless it is a blank one (the scene's)."""
    if hung:
        return Fault.MACHINE
    if isinstance(exc, CommandFailed):
        return exc.fault
    if isinstance(exc, BadFrame):
        return classify_failure(message)
    if not isinstance(exc, BlenderFailed) or isinstance(exc, BlenderTerminated):
        return Fault.MACHINE
    return classify_failure(message, *blender_versions())
