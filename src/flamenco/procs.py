"""Child processes that never outlive the process that started them."""

from __future__ import annotations

import ctypes
import signal
import sys
from collections.abc import Callable

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
