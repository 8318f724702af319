"""Parent side of the warm Blender process: find Blender, start it, feed it frames.

Starting Blender costs 0.5-0.8 s per process on a small machine (plus loading the .blend),
so a Worker keeps ONE Blender per job alive and sends it frame after frame. The child
script (``blender_child.py``) runs inside Blender; this module talks to it over pipes:
JSON commands on stdin, ``@@FLAMENCO@@ {json}`` event lines mixed into stdout.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from flamenco.core.matching import parse_version
from flamenco.procs import describe_exit, spawn_options, stop_tree
from flamenco.worker.cleanup import own_temp_folder, remove_when_exited, temp_env

log = logging.getLogger(__name__)

MARKER = "@@FLAMENCO@@"
CHILD_SCRIPT = Path(__file__).with_name("blender_child.py")
DEFAULT_START_TIMEOUT = 300.0  # big production files can take minutes to load
TERMINATE_GRACE = 5.0
VERSION_TIMEOUT = 60.0
STREAM_LIMIT = 4 * 1024 * 1024  # Blender may print very long lines (e.g. Python tracebacks)

Event = dict[str, Any]
EventCallback = Callable[[Event], Awaitable[None]]

_VERSION_RE = re.compile(r"Blender (\d+\.\d+(?:\.\d+)?)")
_PLAIN_VERSION_RE = re.compile(r"^\d+\.\d+(?:\.\d+)?\b")
# Blender 3.4's CLI reports progress only as stdout lines like "Fra:1 ... | Sample 1/8".
_FRA_SAMPLE_RE = re.compile(r"Fra:(\d+) .*\bSample (\d+)/(\d+)")
# Output that is never the reason something failed; left out of error messages.
_NOISE_RE = re.compile(
    r"EGL Error|initialization failed|^Blender quit$|^Read blend:|\| Read blend:|"
    r"^Warning: Falling back to"
)


class BlenderNotFound(RuntimeError):
    """No usable Blender (executable or bpy module) was found."""


class BlenderFailed(RuntimeError):
    """Blender could not start, reported an error, or died."""


class BlenderTerminated(BlenderFailed):
    """Blender was stopped on purpose (terminate() or cancellation) while busy."""


@dataclass(frozen=True)
class BlenderInstall:
    """How to run a script inside Blender: ``[*argv_prefix, script, *sep, *args]``."""

    argv_prefix: tuple[str, ...]
    kind: Literal["executable", "bpy"]
    version: str

    def script_argv(self, script: Path, args: Sequence[str]) -> list[str]:
        # Blender itself stops parsing its own options at "--"; plain Python needs no marker.
        separator = ["--"] if self.kind == "executable" else []
        return [*self.argv_prefix, str(script), *separator, *args]

    @property
    def where(self) -> str:
        """The Blender executable, or the Python whose bpy module it is."""
        return self.argv_prefix[0]


@dataclass(frozen=True)
class ReadyInfo:
    blender_version: str
    pid: int
    resolution: tuple[int, int]


# --- finding Blender -----------------------------------------------------------------------

_NOT_FOUND_HINT = (
    "Install the bpy wheel into this environment with `pip install -e '.[blender]'` "
    "(needs Python 3.11) or pass `--blender PATH` to a Blender executable or a Python with bpy."
)


def find_blender(configured: str | None = None) -> BlenderInstall:
    """The newest Blender this Worker would offer (see find_blenders)."""
    return find_blenders([configured] if configured else [])[-1]


def find_blenders(configured: Sequence[str] = ()) -> list[BlenderInstall]:
    """Every Blender a Worker offers, oldest first, one per version.

    Configured paths (Blender executables or Pythons with bpy) are all used and each must
    work; without any, every `blender` on PATH and the bpy module of this Python.
    """
    installs = [install_at(p) for p in configured] if configured else _found_on_this_machine()
    if not installs:
        raise BlenderNotFound(
            f"No Blender found: no `blender` on PATH and no bpy module. {_NOT_FOUND_HINT}"
        )
    by_version: dict[str, BlenderInstall] = {}
    for install in installs:
        by_version.setdefault(install.version, install)  # the first given wins a tie
    return sorted(by_version.values(), key=lambda i: parse_version(i.version))


def _found_on_this_machine() -> list[BlenderInstall]:
    installs, seen = [], set()
    for folder in os.environ.get("PATH", "").split(os.pathsep):
        path = shutil.which("blender", path=folder) if folder else None
        if path is None or os.path.realpath(path) in seen:
            continue
        seen.add(os.path.realpath(path))
        try:
            installs.append(executable_install(path))
        except BlenderNotFound as exc:  # one broken copy must not hide the others
            log.warning("not using %s: %s", path, exc)
    if importlib.util.find_spec("bpy") is not None:
        installs.append(bpy_install())
    return installs


def install_at(configured: str) -> BlenderInstall:
    """A configured Blender: a Blender executable, or a Python interpreter with bpy."""
    # Absolute: Blender children run with other working folders.
    path = os.path.abspath(shutil.which(configured) or configured)
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        raise BlenderNotFound(
            f"--blender {configured!r} is not an executable file; give a Blender executable "
            "or a Python 3.11 interpreter that has the bpy module."
        )
    output = _probe([path, "--version"], path)
    if output.startswith("Python "):
        return bpy_install(path)
    if _VERSION_RE.search(output):
        return executable_install(path, output)
    raise BlenderNotFound(
        f"--blender {configured!r} is neither Blender nor Python (its --version said "
        f"{output.strip()[:80]!r})."
    )


def executable_install(path: str, version_output: str | None = None) -> BlenderInstall:
    output = version_output or _probe([path, "--version"], path)
    match = _VERSION_RE.search(output)
    if not match:
        raise BlenderNotFound(f"{path} does not look like Blender: {output.strip()[-500:]}")
    # --python-exit-code makes an uncaught exception in our script end Blender non-zero
    # instead of Blender carrying on (and exiting 0) after printing the traceback.
    prefix = (path, "-b", "--factory-startup", "-y", "--python-exit-code", "1", "--python")
    return BlenderInstall(argv_prefix=prefix, kind="executable", version=match[1])


def bpy_install(python: str = sys.executable) -> BlenderInstall:
    """The bpy module of a Python interpreter (this one unless named)."""
    code = "import bpy; print(bpy.app.version_string)"
    # Probe in a throwaway user folder: importing bpy would otherwise write to ~/.config.
    with tempfile.TemporaryDirectory(prefix="flamenco-bpy-probe-") as tmp:
        try:
            output = _probe([python, "-c", code], "the bpy module", child_env(Path(tmp)))
        except BlenderNotFound:
            if python == sys.executable:
                raise
            raise BlenderNotFound(
                f"--blender {python!r} is a Python that cannot import the bpy module; "
                "install bpy into it (pip install bpy, Python 3.11) or give a Blender executable."
            ) from None
    versions = [ln for ln in output.splitlines() if _PLAIN_VERSION_RE.match(ln.strip())]
    if not versions:
        raise BlenderNotFound(f"Could not read the bpy version: {output.strip()[-500:]}")
    version = _PLAIN_VERSION_RE.match(versions[-1].strip())[0]  # type: ignore[index]
    # -P: never put the child script's folder first on sys.path, where a sibling module
    # could shadow a standard-library module that bpy imports.
    return BlenderInstall(argv_prefix=(python, "-P"), kind="bpy", version=version)


def _probe(argv: list[str], what: str, env: Mapping[str, str] | None = None) -> str:
    try:
        done = subprocess.run(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            timeout=VERSION_TIMEOUT,
            env=env,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BlenderNotFound(f"Could not run {what}: {exc}. {_NOT_FOUND_HINT}") from exc
    if done.returncode != 0:
        raise BlenderNotFound(
            f"{what} failed with exit code {done.returncode}: {done.stdout.strip()[-500:]}"
        )
    return done.stdout


def child_env(user_resources: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment for a Blender child, with its user folder redirected.

    Without BLENDER_USER_RESOURCES, bpy writes caches and preferences into ~/.config,
    which may be read-only, shared between workers, or hold a user's personal add-ons.
    """
    user_resources.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env["BLENDER_USER_RESOURCES"] = str(user_resources)
    if extra:
        env.update(extra)
    return env


def default_user_resources() -> Path:
    """One folder per parent process, i.e. per Worker, when the Worker does not choose."""
    return Path(tempfile.gettempdir()) / "flamenco-blender" / str(os.getpid())


# --- reading the child's output ------------------------------------------------------------


def parse_line(raw: bytes) -> tuple[str | None, Event | None]:
    """Split one output line into (plain Blender text, event). Either part may be None.

    The marker is searched anywhere in the line because Blender's C code can leave a
    half-written line on stdout right before our event.
    """
    text = raw.decode("utf-8", errors="replace").rstrip()
    head, found, tail = text.partition(MARKER)
    plain = head.rstrip() or None
    if not found:
        return plain, None
    try:
        event = json.loads(tail)
    except json.JSONDecodeError:
        return text, None  # not really ours: keep it as a log line
    return plain, event if isinstance(event, dict) else None


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
