"""Worker commands: what a task's `type` names and a Worker runs.

A command is an object with a `name` and ``async run(task, report)``, found through the entry
point group ``flamenco.commands`` (`commands.registry`), so a studio adds its own in a
pip-installable package. It gets a `CommandTask` (the task's parameters, frames, the job's
fetched files, a folder of its own and, lent by the Worker, the job's warm Blender) and a
`Reporter` (log lines, progress, output files). It never imports the Worker: what it needs
the Worker lends through these narrow interfaces. Raising fails the task with the exception's
message; `CommandFailed` also says whose fault it is.

Built-ins, one module each: `blender_render`, `ffmpeg`, `blender_script`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from flamenco.blobs import safe_join
from flamenco.core.faults import Fault


class CommandFailed(Exception):
    """Fails the task with `message`, one sentence. `fault`: the machine's (the default:
    the task is retried on another Worker) or the file's (every Worker would fail the same
    way: the job fails at once)."""

    def __init__(self, message: str, fault: Fault = Fault.MACHINE) -> None:
        super().__init__(message)
        self.message = message
        self.fault = fault


@dataclass(frozen=True)
class BlenderReady:
    """The job's Blender, its file open."""

    version: str  # Blender's version string
    where: str  # the executable, or the Python whose bpy module it is
    pid: int
    resolution: tuple[int, int]  # the scene's rendered size (x, y times the percentage)


@dataclass(frozen=True)
class RenderedFrame:
    """A frame Blender saved, with what it said the file holds."""

    frame: int
    path: Path
    size: tuple[int, int] | None  # None where Blender writes another size (crop, stereo)
    file_format: str | None  # Blender's name: PNG, OPEN_EXR, ...


class JobBlender(Protocol):
    """The warm Blender of the task's job, lent by the Worker. Everything it prints goes to
    the task's log; a failure raises with Blender's sentence."""

    async def open(self, blend: Path, *, device: str = "CPU", scripts: bool = True) -> BlenderReady:
        """The job's Blender with `blend` open: the one already warm, or a new one."""
        ...

    async def render(
        self,
        frames: Sequence[int],
        output_dir: Path,
        *,
        output_pattern: str,
        output_format: str = "SCENE",
        persistent_data: bool = True,
        border: tuple[float, float, float, float] | None = None,
        on_progress: Callable[[int, int, int], None] | None = None,
        on_frame: Callable[[RenderedFrame], Awaitable[None]] | None = None,
    ) -> None:
        """Render `frames` into `output_dir` (open first). `on_progress(frame, sample,
        samples)` hears each sample, `on_frame` each saved frame as soon as it is saved."""
        ...

    async def run_script(
        self, script: Path, args: Sequence[str], frame: int | None = None
    ) -> list[Path]:
        """Run a Python script inside Blender with the file open (open first), in the job's
        folder; returns the paths it appended to FLAMENCO_OUTPUTS. The process is not used
        again afterwards (the script may have changed the file)."""
        ...


class Reporter(Protocol):
    """What a command tells the farm about its task."""

    def log(self, line: str) -> None:
        """A line of the task's log."""
        ...

    def progress(self, fraction: float, activity: str) -> None:
        """How far the whole task is (0..1) and what it does now."""
        ...

    async def output(
        self,
        path: Path,
        frame: int | None = None,
        *,
        name: str | None = None,
        size: tuple[int, int] | None = None,
        file_format: str | None = None,
    ) -> None:
        """Send a file the task made. With `frame`: a frame of the job, checked like every
        frame (whole, its extension's kind and, where given, `size` and `file_format`). Without:
        an artifact (a job file), sent under `name`, by default its path relative to the job's
        folder when it lies inside, else its file name. A file that may not be sent raises
        with the reason."""
        ...


@dataclass(frozen=True)
class CommandTask:
    """One task, as its command sees it."""

    job_id: str
    task_id: str
    name: str
    parameters: Mapping[str, Any]  # the task's command, as its job type compiled it
    frames: list[int]
    job_dir: Path  # the job's files, fetched
    files: Sequence[str]  # their paths relative to job_dir
    out_dir: Path  # a folder of the task's own for what it writes (made on demand)
    blender: JobBlender = field(repr=False)

    def job_file(self, relpath: str) -> Path:
        """A job file's path from its path in the job (a parameter, say); UnsafePath, with
        the reason, for one that would leave the job's folder."""
        return safe_join(self.job_dir, relpath)


@runtime_checkable
class Command(Protocol):
    name: str

    async def run(self, task: CommandTask, report: Reporter) -> None: ...
