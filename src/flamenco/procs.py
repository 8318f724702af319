"""Child processes that never outlive the process that started them; files only we can read."""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path

PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """Runs in the child before exec: ask Linux to SIGTERM us when the parent dies.

    A Worker killed with SIGKILL would otherwise leave its Blender rendering for nobody, and a
    killed `flamenco up` would leave its Server, Manager and Workers running.
    """
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def child_preexec() -> Callable[[], None] | None:
    return die_with_parent if sys.platform.startswith("linux") else None


PRIVATE_UMASK = 0o077  # files 0600, folders 0700


def keep_files_private() -> None:
    """From now on, what this process and its children create is for this user alone.

    Job files, frames, SQLite files, tokens and logs of a farm are nobody else's business; a
    umask set once at start covers every file written later, Blender's included, without a
    chmod after each write (which would leave a moment in which the file is readable).
    """
    os.umask(PRIVATE_UMASK)


def private_folder(path: Path) -> Path:
    """Create `path` if needed and make it 0700, also when an older version made it 0755."""
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o700)
    return path
