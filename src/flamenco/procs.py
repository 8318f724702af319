"""Everything that differs between Linux, macOS and Windows, in one place.

Child processes (that never outlive us where the OS allows it, and that can be stopped as a
whole tree), the signals that stop a component, the facts a Worker reports about its machine,
and files only we can read. Every other module goes through here, so that the platform-specific
code stays this small. Linux is tested for real; the Windows and macOS branches are written
for, and their *decisions* are pure functions of the platform (`tests/test_procs_platforms.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import platform as stdlib_platform
import signal
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

WINDOWS = "win32"
# subprocess.CREATE_NEW_PROCESS_GROUP and signal.CTRL_BREAK_EVENT exist only on Windows; the
# values are fixed by the Windows API, so the decisions below can be made (and tested) anywhere.
CREATE_NEW_PROCESS_GROUP = 0x00000200
CTRL_BREAK_EVENT = 1
PR_SET_PDEATHSIG = 1


def is_windows(platform: str = sys.platform) -> bool:
    return platform == WINDOWS


# ---- starting children ------------------------------------------------------------------------


def die_with_parent() -> None:
    """Runs in the child before exec: ask Linux to SIGTERM us when the parent dies.

    A Worker killed with SIGKILL would otherwise leave its Blender rendering for nobody, and a
    killed `flamenco up` would leave its Server, Manager and Workers running. macOS and Windows
    have no such request; there a polite stop of the parent stops its children (`ProcessTree`).
    """
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def spawn_options(own_group: bool, platform: str = sys.platform) -> dict[str, Any]:
    """Keyword arguments for `subprocess.Popen` and `asyncio.create_subprocess_exec`.

    `own_group`: the child and what it starts get a process group (a session) of their own, so
    that a Ctrl-C meant for us does not reach them and `ProcessTree` can stop them as one. On
    Windows every child gets its own group: CTRL_BREAK_EVENT, the only polite stop there, is sent
    to a whole group and to nothing smaller (a new group also ignores the console's Ctrl-C).
    """
    if is_windows(platform):
        return {"creationflags": CREATE_NEW_PROCESS_GROUP}
    options: dict[str, Any] = {"start_new_session": own_group}
    if platform.startswith("linux"):
        options["preexec_fn"] = die_with_parent
    return options


# ---- stopping children --------------------------------------------------------------------------


@dataclass(frozen=True)
class PoliteStop:
    """How a child is asked to stop: which signal (its name in `signal`) and to whom."""

    signal_name: str
    whole_group: bool  # os.killpg on the child's group rather than os.kill on the child


def polite_stop(own_group: bool, platform: str = sys.platform) -> PoliteStop:
    """SIGTERM on POSIX (not SIGINT: Blender would finish its render first); CTRL_BREAK_EVENT on
    Windows, where `os.kill(pid, CTRL_BREAK_EVENT)` reaches the group that `spawn_options` gave
    the child (TerminateProcess, Windows' `terminate()`, would allow no clean-up at all)."""
    if is_windows(platform):
        return PoliteStop("CTRL_BREAK_EVENT", whole_group=False)
    return PoliteStop("SIGTERM", whole_group=own_group)


def group_kill_signal_name(own_group: bool, platform: str = sys.platform) -> str | None:
    """What the forced stop also sends to the child's whole group, if anything: on POSIX a group
    of its own also holds grandchildren that the parent started after we last looked."""
    return "SIGKILL" if own_group and not is_windows(platform) else None


class ProcessTree:
    """A child we started and every process it started, to be stopped as one.

    The descendants are noted before each step: once their parent is gone, a grandchild is
    re-parented and can no longer be found from the child.
    """

    def __init__(self, pid: int, own_group: bool) -> None:
        self.pid = pid
        self.own_group = own_group
        self.seen: dict[int, psutil.Process] = {}

    def _look(self) -> None:
        with contextlib.suppress(psutil.Error):
            root = psutil.Process(self.pid)
            self.seen.setdefault(self.pid, root)
            for child in root.children(recursive=True):
                self.seen.setdefault(child.pid, child)

    def ask_to_stop(self) -> None:
        """The polite stop, to the child (or its group): it may clean up and end its children."""
        self._look()
        plan = polite_stop(self.own_group)
        sig = getattr(signal, plan.signal_name)
        # Gone already, or (Windows, a process without a console) no way to ask: the kill
        # after the grace period ends it all the same.
        with contextlib.suppress(OSError):
            if plan.whole_group:
                os.killpg(self.pid, sig)  # type: ignore[attr-defined,unused-ignore]
            else:
                os.kill(self.pid, sig)

    def kill(self) -> None:
        """Kill whatever of the tree is left: the child, every descendant seen, its group."""
        self._look()
        for proc in self.seen.values():
            # psutil checks that the pid still belongs to the process it saw (creation time).
            with contextlib.suppress(psutil.Error):
                proc.kill()
        group_signal = group_kill_signal_name(self.own_group)
        if group_signal is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, getattr(signal, group_signal))  # type: ignore[attr-defined,unused-ignore]

    def alive(self) -> list[int]:
        """The pids of the tree still running (zombies count as gone)."""
        return [pid for pid, proc in self.seen.items() if _running(proc)]


def _running(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


async def stop_tree(proc: asyncio.subprocess.Process, grace_s: float, own_group: bool) -> None:
    """Ask an asyncio child to stop, kill it after `grace_s`, and any descendant left over."""
    if proc.returncode is not None:
        return
    tree = ProcessTree(proc.pid, own_group)
    tree.ask_to_stop()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(proc.wait(), grace_s)
    tree.kill()
    await proc.wait()


def describe_exit(returncode: int | None) -> str:
    """A child's end in words; a negative code (POSIX only) names the signal that killed it."""
    if returncode is None:
        return "is still running"
    if returncode < 0:
        try:
            return f"was killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"was killed by signal {-returncode}"
    return f"exited with code {returncode}"


# ---- being stopped ----------------------------------------------------------------------------


def shutdown_signal_names(platform: str = sys.platform) -> tuple[str, ...]:
    """The signals that mean "stop now, cleanly": Ctrl-C, SIGTERM, and on Windows Ctrl-Break,
    which is how a parent there (`flamenco up`, a service manager) asks (`polite_stop`)."""
    return ("SIGINT", "SIGTERM", "SIGBREAK") if is_windows(platform) else ("SIGINT", "SIGTERM")


def uses_loop_signal_handlers(platform: str = sys.platform) -> bool:
    """Windows' event loops have no `add_signal_handler` (NotImplementedError)."""
    return not is_windows(platform)


def shutdown_signals(platform: str = sys.platform) -> list[signal.Signals]:
    # A name this Python lacks (SIGBREAK off Windows, when the Windows branch is tried here) is
    # left out rather than failing: the platform names it only where it exists.
    return [getattr(signal, n) for n in shutdown_signal_names(platform) if hasattr(signal, n)]


def on_shutdown_signals(
    loop: asyncio.AbstractEventLoop, callback: Callable[[], None], platform: str = sys.platform
) -> None:
    """Call `callback` on `loop` when this process is asked to stop."""
    for sig in shutdown_signals(platform):
        if uses_loop_signal_handlers(platform):
            loop.add_signal_handler(sig, callback)
        else:
            # The handler runs on the main thread between two bytecodes; hand over to the loop.
            signal.signal(sig, lambda _signum, _frame: loop.call_soon_threadsafe(callback))


def on_shutdown_signals_sync(handler: Callable[[int, object], None]) -> None:
    """For a process without an event loop (`flamenco up`): `handler` on every stop signal."""
    for sig in shutdown_signals():
        signal.signal(sig, handler)


# ---- the machine ------------------------------------------------------------------------------


def host_name() -> str:
    """The machine's name, as `hostname` prints it (os.uname() does not exist on Windows)."""
    return socket.gethostname()


def os_description() -> str:
    return stdlib_platform.platform()


def cpu_count() -> int:
    return os.cpu_count() or 0


def memory_mb() -> int:
    return int(psutil.virtual_memory().total // 2**20)


def memory_used_mb() -> int:
    """In use by programs: total less what could be had without swapping (MemAvailable)."""
    memory = psutil.virtual_memory()
    return int((memory.total - memory.available) // 2**20)


def cpu_busy_and_total_s() -> tuple[float, float]:
    """Seconds all CPUs spent busy, and in all, since boot; waiting for disks counts as idle."""
    times = psutil.cpu_times()
    total = sum(times)
    idle = times.idle + getattr(times, "iowait", 0.0)
    return total - idle, total


# ---- private files ------------------------------------------------------------------------------

PRIVATE_UMASK = 0o077  # files 0600, folders 0700


def keep_files_private() -> None:
    """From now on, what this process and its children create is for this user alone.

    Job files, frames, SQLite files, tokens and logs of a farm are nobody else's business; a
    umask set once at start covers every file written later, Blender's included, without a
    chmod after each write (which would leave a moment in which the file is readable). On
    Windows the umask only touches the read-only flag: there a file is as private as the folder
    it inherits its ACL from (the data folders live in the user's profile by default).
    """
    os.umask(PRIVATE_UMASK)


def private_file(path: Path) -> Path:
    """Make an existing file 0600, also when an older version wrote it 0644."""
    path.chmod(0o600)
    return path


def private_folder(path: Path) -> Path:
    """Create `path` if needed and make it 0700, also when an older version made it 0755."""
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o700)
    return path
