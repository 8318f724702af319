"""The POSIX branch of `flamenco.procs` for real: process trees stopped whole, stop signals.

Children here are real Python processes: one that ignores the polite stop, grandchildren that
ignore it too, one that left the group (a session of its own), as a Blender's helpers might.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from farmkit import wait_until
from flamenco.cli.supervisor import Supervisor
from flamenco.procs import ProcessTree, spawn_options, stop_tree

# Starts two grandchildren that ignore SIGTERM, one in its own session (out of the group), prints
# their pids and sleeps; argv[1] == "stubborn": it ignores SIGTERM itself too.
PARENT = textwrap.dedent(
    """
    import signal, subprocess, sys, time
    stubborn = sys.argv[1] == "stubborn"
    grandchild = [sys.executable, "-c",
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"]
    in_group = subprocess.Popen(grandchild, stdout=subprocess.DEVNULL)
    own_session = subprocess.Popen(grandchild, stdout=subprocess.DEVNULL, start_new_session=True)
    if stubborn:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    print(in_group.pid, own_session.pid, flush=True)
    time.sleep(600)
    """
)


def gone(pid: int) -> bool:
    """Not running; a zombie counts as gone (this container's init may be slow to reap)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def kill_left_overs(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(psutil.NoSuchProcess):
            psutil.Process(pid).kill()


@pytest.mark.parametrize("behaviour", ["polite", "stubborn"])
def test_a_child_with_its_own_group_is_stopped_with_all_it_started(behaviour: str) -> None:
    async def scenario() -> tuple[list[int], float, int | None]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            PARENT,
            behaviour,
            stdout=asyncio.subprocess.PIPE,
            **spawn_options(own_group=True),
        )
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 30)
        pids = [proc.pid, *(int(p) for p in line.split())]
        try:
            started = time.monotonic()
            await stop_tree(proc, grace_s=1.0, own_group=True)
            return pids, time.monotonic() - started, proc.returncode
        finally:
            kill_left_overs(pids[1:])  # only if the test fails: nothing may outlive it

    pids, elapsed, returncode = asyncio.run(scenario())
    wait_until(lambda: all(gone(pid) for pid in pids), 10, f"every process of {pids} gone")
    if behaviour == "polite":
        assert returncode == -signal.SIGTERM and elapsed < 1.0  # no wait for the grace period
    else:
        assert returncode == -signal.SIGKILL and 1.0 <= elapsed < 5.0


def test_the_supervisor_stops_a_child_and_the_grandchildren_it_left_behind(
    tmp_path: Path,
) -> None:
    """As `flamenco up` on macOS, where no PR_SET_PDEATHSIG ends a Worker's Blender for it: the
    child stops politely but its grandchildren ignore SIGTERM; stop() still ends them all."""
    farm = Supervisor(program=(sys.executable, "-c", PARENT))
    child = farm.start("Parent", ["polite"], {}, tmp_path / "parent.log")
    try:
        assert child.proc is not None
        log = tmp_path / "parent.log"
        line = wait_until(lambda: log.read_text().strip(), 30, "the grandchildren's pids")
        pids = [child.proc.pid, *(int(p) for p in line.split())]
        assert not any(gone(pid) for pid in pids)
    finally:
        farm.stop(grace_s=2.0)
    wait_until(lambda: all(gone(pid) for pid in pids), 10, f"every process of {pids} gone")
    assert child.proc.returncode == -signal.SIGTERM


def test_a_tree_without_a_group_of_its_own_is_killed_through_what_was_seen_of_it() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", PARENT, "stubborn"],
        stdout=subprocess.PIPE,
        **spawn_options(own_group=False),
    )
    try:
        assert proc.stdout is not None
        pids = [proc.pid, *(int(p) for p in proc.stdout.readline().split())]
        tree = ProcessTree(proc.pid, own_group=False)
        tree.ask_to_stop()
        with pytest.raises(subprocess.TimeoutExpired):
            proc.wait(0.5)  # it ignores the polite stop
        assert sorted(tree.alive()) == sorted(pids)
        tree.kill()
        assert proc.wait(10) == -signal.SIGKILL
    finally:
        proc.kill()
        proc.wait()
        kill_left_overs(pids[1:])
    wait_until(lambda: all(gone(pid) for pid in pids), 10, f"every process of {pids} gone")
    assert tree.alive() == []


# Waits for a stop signal through procs.on_shutdown_signals, as the Worker does, on the
# platform named in argv[1]: "win32" takes the signal.signal fallback that Windows needs.
WAITER = textwrap.dedent(
    """
    import asyncio, sys
    from flamenco.procs import on_shutdown_signals

    async def main():
        stop = asyncio.Event()
        on_shutdown_signals(asyncio.get_running_loop(), stop.set, platform=sys.argv[1])
        print("waiting", flush=True)
        await stop.wait()
        print("stopped cleanly", flush=True)

    asyncio.run(main())
    """
)


@pytest.mark.parametrize(
    ("platform", "sig"),
    [
        ("linux", signal.SIGTERM),
        ("linux", signal.SIGINT),
        ("win32", signal.SIGTERM),  # the fallback, run here for real (its Windows use is not)
        ("win32", signal.SIGINT),
    ],
)
def test_a_stop_signal_ends_the_event_loop_cleanly(platform: str, sig: signal.Signals) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", WAITER, platform], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "waiting\n"
        proc.send_signal(sig)
        out, _ = proc.communicate(timeout=20)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 0
    assert out == "stopped cleanly\n"
