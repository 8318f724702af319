"""The children of `flamenco up`: each one that dies is started again, until the farm stops.

A farm on one machine is only as good as its weakest process: a Manager killed by the OOM
killer, or a Server that crashed, must not take the Workers and the Dashboard with it. The
supervisor starts a dead child again after a back-off that doubles while it keeps dying and
starts over once it stayed up a while, and logs each death and restart.

Children must be started from the thread that lives as long as the farm (the main thread):
Linux sends PR_SET_PDEATHSIG when the *thread* that forked a child ends, not the process.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from flamenco.procs import ProcessTree, describe_exit, private_file, spawn_options

log = logging.getLogger("flamenco.up")

STOP_GRACE_S = 15.0  # a child that has not stopped after SIGTERM this long is killed


@dataclass(frozen=True)
class Backoff:
    """How long a dead child waits before it starts again.

    The first restart comes after `first_s`; each death soon after a restart doubles the wait
    up to `max_s`, so a child that cannot start (a broken configuration) does not spin the
    CPU; a child that stayed up `stable_s` died for a new reason and starts over at `first_s`.
    """

    first_s: float = 0.5
    max_s: float = 30.0
    stable_s: float = 60.0

    def next_delay(self, previous_s: float | None, uptime_s: float) -> float:
        if previous_s is None or uptime_s >= self.stable_s:
            return self.first_s
        return min(previous_s * 2, self.max_s)


@dataclass
class Child:
    """One supervised process: what to run, and where it stands."""

    label: str
    args: list[str]  # after the supervisor's program, `python -m flamenco`
    env: dict[str, str]  # on top of ours; secrets go here, never on the command line
    log_file: Path
    proc: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    delay_s: float | None = None  # the last back-off; None until it first died
    restart_at: float | None = None  # while it waits to start again
    restarts: int = 0
    exits: list[int] = field(default_factory=list)  # return codes, newest last

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class Supervisor:
    """Starts the farm's children, starts each again when it dies, and stops them all."""

    def __init__(
        self,
        backoff: Backoff | None = None,
        clock: Callable[[], float] = time.monotonic,
        program: tuple[str, ...] = (sys.executable, "-m", "flamenco"),
    ) -> None:
        self.backoff = backoff or Backoff()
        self.clock = clock
        self.program = program  # what each child's args follow
        self.children: list[Child] = []
        self.stopped = False

    def start(self, label: str, args: list[str], env: dict[str, str], log_file: Path) -> Child:
        child = Child(label, args, env, log_file)
        self.children.append(child)
        self._spawn(child)
        return child

    def child(self, label: str) -> Child:
        return next(c for c in self.children if c.label == label)

    def watch(self) -> None:
        """Look at every child once: note the ones that died, start the ones whose wait ended."""
        if self.stopped:
            return
        now = self.clock()
        for child in self.children:
            if child.restart_at is not None:
                if now >= child.restart_at:
                    child.restart_at = None
                    child.restarts += 1
                    self._spawn(child)
                continue
            if child.proc is None:
                how = "could not be started"
            else:
                returncode = child.proc.poll()
                if returncode is None:
                    continue
                child.exits.append(returncode)
                how = describe_exit(returncode)
            uptime = now - child.started_at
            child.delay_s = self.backoff.next_delay(child.delay_s, uptime)
            child.restart_at = now + child.delay_s
            log.warning(
                "%s (pid %s) %s after %.1f s up; starting it again in %.1f s (see %s)",
                child.label,
                child.proc.pid if child.proc is not None else "-",
                how,
                uptime,
                child.delay_s,
                child.log_file,
            )

    def _spawn(self, child: Child) -> None:
        child.started_at = self.clock()
        try:
            child.log_file.parent.mkdir(parents=True, exist_ok=True)
            # 0600 also for a log an older version made 0644: logs may name jobs and hosts.
            fd = os.open(child.log_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            private_file(child.log_file)
            with os.fdopen(fd, "ab") as sink:
                child.proc = subprocess.Popen(
                    [*self.program, *child.args],
                    env={**os.environ, **child.env},
                    stdout=sink,
                    stderr=subprocess.STDOUT,
                    **spawn_options(own_group=False),
                )
        except OSError as exc:
            child.proc = None  # counts as a death at the next look, so it is retried later
            log.error("%s could not be started: %s", child.label, exc)
            return
        pid = child.proc.pid
        if child.restarts:
            log.warning("%s started again (pid %d, restart %d)", child.label, pid, child.restarts)
        else:
            log.info("%s started (pid %d)", child.label, pid)

    def stop(self, grace_s: float = STOP_GRACE_S) -> None:
        """Ask every child to stop, the last started first; after `grace_s` kill what is left of
        each child's process tree (a Worker's Blender too, where nothing else would: macOS)."""
        self.stopped = True
        running = [c.proc for c in reversed(self.children) if c.proc is not None and c.running]
        trees = [ProcessTree(proc.pid, own_group=False) for proc in running]
        for tree in trees:
            tree.ask_to_stop()
        deadline = time.monotonic() + grace_s
        for proc, tree in zip(running, trees, strict=True):
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(max(0.1, deadline - time.monotonic()))
            tree.kill()
            proc.wait()
