"""The warm Blender: one long-lived Blender process per job, fed commands over pipes.

Starting Blender costs 0.5-0.8 s per process on a small machine (plus loading the .blend),
so a Worker keeps ONE Blender per job alive and sends it command after command. The child
script (``blender_child.py``) runs inside Blender; this module talks to it over pipes:
JSON commands on stdin, ``@@FLAMENCO@@ {json}`` event lines mixed into stdout
(`blender.parse_line`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import shutil
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flamenco.procs import describe_exit, spawn_options, stop_tree
from flamenco.worker.blender import (
    BlenderInstall,
    Event,
    child_env,
    default_user_resources,
    parse_line,
)
from flamenco.worker.cleanup import own_temp_folder, remove_when_exited, temp_env

CHILD_SCRIPT = Path(__file__).with_name("blender_child.py")
DEFAULT_START_TIMEOUT = 300.0  # big production files can take minutes to load
TERMINATE_GRACE = 5.0
STREAM_LIMIT = 4 * 1024 * 1024  # Blender may print very long lines (e.g. Python tracebacks)

EventCallback = Callable[[Event], Awaitable[None]]

# Blender 3.4's CLI reports progress only as stdout lines like "Fra:1 ... | Sample 1/8".
_FRA_SAMPLE_RE = re.compile(r"Fra:(\d+) .*\bSample (\d+)/(\d+)")
# Output that is never the reason something failed; left out of error messages.
_NOISE_RE = re.compile(
    r"EGL Error|initialization failed|^Blender quit$|^Read blend:|\| Read blend:|"
    r"^Warning: Falling back to"
)


class BlenderFailed(RuntimeError):
    """Blender could not start, reported an error, or died."""


class BlenderTerminated(BlenderFailed):
    """Blender was stopped on purpose (terminate() or cancellation) while busy."""


class ScriptFailed(BlenderFailed):
    """A job's own script (blender-script) raised; the message is its last traceback line."""


@dataclass(frozen=True)
class ReadyInfo:
    blender_version: str
    pid: int
    resolution: tuple[int, int]


# --- the warm process ----------------------------------------------------------------------


class WarmBlender:
    """One long-lived Blender process that keeps one job's .blend loaded."""

    def __init__(
        self,
        install: BlenderInstall,
        blend_path: Path | None,
        *,
        device: str = "CPU",
        scripts: bool = True,
        user_resources: Path | None = None,
        env: Mapping[str, str] | None = None,
        start_timeout: float = DEFAULT_START_TIMEOUT,
        temp_root: Path | None = None,
        tail_lines: int = 30,
        list_devices: bool = False,
    ) -> None:
        self.install = install
        # None: a standby process, bpy imported, waiting to be given its job's file (`open`).
        self._blend_path = Path(blend_path).absolute() if blend_path else None
        self.device = device.upper()
        self.scripts = scripts  # whether the file's own Python (drivers, text blocks) runs
        self._user_resources = user_resources or default_user_resources()
        self._extra_env = dict(env or {})
        # Each process gets a temporary folder of its own under it, gone when it ends.
        self._temp_root = temp_root
        self._temp_watch: asyncio.Task[None] | None = None
        self._start_timeout = start_timeout
        self._proc: asyncio.subprocess.Process | None = None
        self._tail: deque[str] = deque(maxlen=tail_lines)
        self._lock = asyncio.Lock()
        self._terminating = False
        self._child_progress = False  # True once the child reports progress itself
        self._renders = 0
        self._standby = False
        # On standby, Blender first says which Cycles devices it has (`cycles_probe.py`).
        self._list_devices = list_devices and self._blend_path is None
        self.devices: Event | None = None  # that `devices` event, once it came
        self.ready: ReadyInfo | None = None
        # Blender reports a broken driver once (usually while loading) and then disables
        # it, so a warm process warns only once: keep the lines for every later task.
        self.warnings: list[str] = []

    # -- properties --

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.returncode is None and not self._terminating

    @property
    def blend_path(self) -> Path | None:
        return self._blend_path

    @property
    def on_standby(self) -> bool:
        """Started without a file and waiting for `open`."""
        return self.alive and self._blend_path is None and self._standby

    @property
    def renders(self) -> int:
        """How many render commands this process has completed."""
        return self._renders

    def argv(self) -> list[str]:
        args = ["--device", self.device, *([] if self.scripts else ["--no-scripts"])]
        if self._blend_path is not None:
            args = ["--blend", str(self._blend_path), *args]
        if self._list_devices:
            args.append("--list-devices")
        return self.install.script_argv(CHILD_SCRIPT, args)

    async def __aenter__(self) -> WarmBlender:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.terminate()

    # -- starting --

    async def start(self, on_event: EventCallback | None = None) -> ReadyInfo | None:
        """Spawn Blender, load the file and wait until it is ready for render commands.

        Without a file: wait until Blender is on standby (returns None); `open` gives it one.
        """
        if self._proc is not None:
            raise RuntimeError("this WarmBlender was already started")
        try:
            self._proc = await self._spawn_with_temp()
        except OSError as exc:
            raise BlenderFailed(f"Could not start Blender ({self.argv()[0]}): {exc}") from exc
        if self._blend_path is None:
            await self._until("standby", on_event)
            self._standby = True
            return None
        return await self._until_ready(on_event)

    async def open(
        self,
        blend_path: Path,
        device: str,
        on_event: EventCallback | None = None,
        *,
        scripts: bool = True,
    ) -> ReadyInfo:
        """Give a Blender on standby its job's file; wait until it is ready to render."""
        if not self.on_standby:
            raise RuntimeError("only a started Blender on standby can open a file")
        self._blend_path, self.device, self._standby = Path(blend_path).absolute(), device, False
        self.scripts = scripts
        opening = {"op": "open", "blend": str(self._blend_path), "device": device}
        await self._send({**opening, "scripts": scripts})
        return await self._until_ready(on_event)

    async def _until_ready(self, on_event: EventCallback | None) -> ReadyInfo:
        event = await self._until("ready", on_event)
        res = event.get("resolution") or (0, 0)
        self.ready = ReadyInfo(
            blender_version=str(event.get("blender_version", self.install.version)),
            pid=int(event.get("pid", self.pid or 0)),
            resolution=(int(res[0]), int(res[1])),
        )
        return self.ready

    async def _until(self, kind: str, on_event: EventCallback | None) -> Event:
        """The child's `kind` event within the start timeout; on any failure it is stopped."""
        what = f"load {self._blend_path}" if self._blend_path else "start"
        try:
            async with asyncio.timeout(self._start_timeout):
                return await self._wait_event(kind, on_event)
        except TimeoutError:
            await self.terminate()
            raise BlenderFailed(
                f"Blender did not {what} within {self._start_timeout:.0f} s{self._tail_text()}"
            ) from None
        except BaseException:
            await self.terminate()
            raise

    async def _spawn_with_temp(self) -> asyncio.subprocess.Process:
        """Spawn it, with its own temporary folder (TMPDIR, TEMP, TMP; Blender makes its
        `blender_*` folder there) when given a root, removed once the process ends, however it
        ends (worker/cleanup.py)."""
        if self._temp_root is None:
            return await self._spawn()
        folder = own_temp_folder(self._temp_root)
        self._extra_env.update(temp_env(folder))
        try:
            proc = await self._spawn()
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        self._temp_watch = asyncio.create_task(remove_when_exited(proc, folder))
        return proc

    async def _spawn(self) -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            *self.argv(),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=child_env(self._user_resources, self._extra_env),
            limit=STREAM_LIMIT,
            # Its own group: a Ctrl-C meant for the Worker must not reach Blender (3.4 would
            # start a slow "graceful" cancel); the Worker stops it, and what it started, itself.
            **spawn_options(own_group=True),
        )

    async def _wait_event(self, kind: str, on_event: EventCallback | None) -> Event:
        while True:
            event = await self._next_event(on_event)
            if event is None:
                raise await self._died(
                    "before it was on standby" if kind == "standby" else "before it was ready"
                )
            if event.get("event") == "error":
                await self._reap()
                message = str(event.get("message"))
                raise BlenderFailed(f"{message}{self._tail_text(skip_in=message)}")
            if event.get("event") == kind:
                return event

    async def _reap(self) -> None:
        """After a fatal error event the child exits by itself; make sure it really does."""
        assert self._proc is not None
        try:
            await asyncio.wait_for(self._proc.wait(), TERMINATE_GRACE)
        except TimeoutError:
            await self.terminate()

    # -- rendering --

    async def render(
        self,
        frames: Sequence[int],
        output_dir: Path,
        output_pattern: str = "frame_######",
        output_format: str = "SCENE",
        on_event: EventCallback | None = None,
        persistent_data: bool = True,
        border: tuple[float, float, float, float] | None = None,
    ) -> list[Path]:
        """Render `frames` into `output_dir`; returns the written files in frame order.
        With `persistent_data`, Cycles keeps what it built for one frame for the next; with
        `border` (min x, max x, min y, max y), only that region of a full-size frame.

        Cancelling the calling task terminates Blender: a bpy render cannot be interrupted
        in any other way, and a half-finished command would leave the pipes out of step.
        """
        async with self._lock:
            if not self.alive:
                raise BlenderFailed(f"Blender {describe_exit(self._returncode())}")
            command = {
                "op": "render",
                "frames": [int(f) for f in frames],
                "output_dir": str(Path(output_dir).absolute()),
                "output_pattern": output_pattern,
                "output_format": output_format,
                "persistent_data": persistent_data,
            }
            if border is not None:
                command["border"] = list(border)
            self._tail.clear()  # error messages should quote this command's output only
            try:
                await self._send(command)
                paths = await self._collect_frames(on_event)
            except BlenderFailed:
                raise  # Blender is either dead or waiting for the next command: both clean.
            except BaseException:
                # Cancelled, or on_event raised: Blender is mid-command and cannot be
                # interrupted, so the pipes are out of step for good.
                await asyncio.shield(self.terminate())
                raise
            self._renders += 1
            return paths

    async def run_script(
        self,
        script: Path,
        args: Sequence[str],
        job_dir: Path,
        frame: int | None = None,
        on_event: EventCallback | None = None,
    ) -> list[Path]:
        """Run a job's Python script inside this Blender, with its file open, in `job_dir`;
        returns the files it listed in FLAMENCO_OUTPUTS (relative ones under `job_dir`).

        The script may change the open file at will, so this process is never given another
        command: it is stopped once the script is done (or has failed). A script that raises
        is a ScriptFailed with its traceback's last line.
        """
        command = {
            "op": "script",
            "script": str(Path(script).absolute()),
            "args": [str(arg) for arg in args],
            "job_dir": str(Path(job_dir).absolute()),
            "frame": frame,
        }
        async with self._lock:
            if not self.alive:
                raise BlenderFailed(f"Blender {describe_exit(self._returncode())}")
            self._tail.clear()
            try:
                await self._send(command)
                while True:
                    event = await self._next_event(on_event)
                    if event is None:
                        raise await self._died("while running the script")
                    if event.get("event") == "script_done":
                        return [Path(job_dir, p) for p in event.get("outputs", [])]
                    if event.get("event") == "error":
                        failure = ScriptFailed if event.get("script") else BlenderFailed
                        raise failure(str(event.get("message")))
            finally:
                await asyncio.shield(self.terminate())

    async def _send(self, command: Mapping[str, Any]) -> None:
        assert self._proc is not None and self._proc.stdin is not None
        try:
            self._proc.stdin.write(json.dumps(command).encode() + b"\n")
            await self._proc.stdin.drain()
        except (BrokenPipeError, ConnectionResetError):
            raise await self._died("before it could take the command") from None

    async def _collect_frames(self, on_event: EventCallback | None) -> list[Path]:
        paths: list[Path] = []
        while True:
            event = await self._next_event(on_event)
            if event is None:
                raise await self._died("while rendering")
            kind = event.get("event")
            if kind == "frame":
                paths.append(Path(event["path"]))
            elif kind == "done":
                return paths
            elif kind == "error":
                raise BlenderFailed(str(event.get("message")))

    # -- the output stream --

    async def _next_event(self, on_event: EventCallback | None) -> Event | None:
        """Relay output until the child's next event; None once its stdout is closed."""
        assert self._proc is not None and self._proc.stdout is not None
        while True:
            try:
                raw = await self._proc.stdout.readline()
            except ValueError:  # a line longer than STREAM_LIMIT: skip what was buffered
                continue
            if not raw:
                return None
            plain, event = parse_line(raw)
            if plain is not None:
                await self._handle_plain(plain, on_event)
            if event is not None:
                if event.get("event") == "progress":
                    self._child_progress = True
                elif event.get("event") == "devices":
                    self.devices = event
                await _call(on_event, event)
                return event

    async def _handle_plain(self, line: str, on_event: EventCallback | None) -> None:
        if not _NOISE_RE.search(line):
            self._tail.append(line)
        await _call(on_event, {"event": "log", "line": line})
        if "Error in PyDriver" in line:
            # Broken drivers render silently wrong images; the user must hear about it.
            self.warnings.append(line)
            await _call(on_event, {"event": "warning", "line": line})
        match = None if self._child_progress else _FRA_SAMPLE_RE.search(line)
        if match:
            frame, sample, samples = (int(g) for g in match.groups())
            progress = {"event": "progress", "frame": frame, "sample": sample, "samples": samples}
            await _call(on_event, progress)

    # -- stopping --

    async def terminate(self) -> None:
        """Stop Blender and everything it started: politely, then killed after a grace period
        (`procs.stop_tree`)."""
        proc = self._proc
        if proc is None or proc.returncode is not None:
            return
        self._terminating = True
        await stop_tree(proc, TERMINATE_GRACE, own_group=True)

    async def quit(self, timeout: float = 10.0) -> None:
        """Ask Blender to exit between commands; terminate it if it does not."""
        if not self.alive:
            return
        async with self._lock:
            with contextlib.suppress(BlenderFailed):
                await self._send({"op": "quit"})
            assert self._proc is not None
            try:
                await asyncio.wait_for(self._proc.wait(), timeout)
            except TimeoutError:
                await self.terminate()

    # -- errors --

    def _returncode(self) -> int | None:
        return self._proc.returncode if self._proc else None

    async def _died(self, when: str) -> BlenderFailed:
        assert self._proc is not None
        returncode = await self._proc.wait()
        cls = BlenderTerminated if self._terminating else BlenderFailed
        return cls(
            f"Blender (pid {self._proc.pid}) {describe_exit(returncode)} {when}{self._tail_text()}"
        )

    def _tail_text(self, skip_in: str = "") -> str:
        """Recent meaningful output, leaving out lines that only repeat `skip_in`."""
        lines = [ln for ln in self._tail if ln.removeprefix("Error: ") not in skip_in]
        return ":\n" + "\n".join(lines) if lines else ""


async def _call(on_event: EventCallback | None, event: Event) -> None:
    if on_event is not None:
        await on_event(event)
