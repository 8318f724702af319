"""What the Worker knows about its running task, and the `Reporter` a command reports through.

A command's log lines, progress and output files become the Worker's task updates and outbox
items here: frames are checked like every frame before they count, artifacts are named and
checked as the Manager and the Server will, so nothing the command sends sticks in the outbox.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

from flamenco import wire
from flamenco.blob_cache import BoundedBlobStore
from flamenco.commands import CommandFailed
from flamenco.core.names import check_artifact_name, check_frame_file_name
from flamenco.frame_check import FrameExpectation, check_frame
from flamenco.outbox import FrameItem, Outbox

LOG_FLUSH_S = 1.0
LOG_FLUSH_LINES = 100

# Queue a task update: (run, wake the delivery loop?, fields of wire.TaskUpdate).
SendUpdate = Callable[..., None]


class TaskRun:
    """What the Worker knows about the task it is running."""

    def __init__(self, assignment: wire.Assignment) -> None:
        self.a = assignment
        self.last_sign_of_life = time.monotonic()
        self.hung = False
        # A job's own script (blender-script) may bake for long without a word: not hung.
        self.may_be_silent = False
        self.frames_done = 0
        self.progress = wire.Progress(task_id=assignment.task_id, progress=0.0, activity="")
        self.log_lines: list[str] = []
        self.last_log_flush = time.monotonic()
        self.frame_started: float | None = None  # when Blender began the current frame
        self.frame_s: float | None = None  # how long a frame of this job took here

    def seconds_left(self) -> float | None:
        """The render's expected remaining time; None while there is nothing to go by."""
        if self.frame_started is None or self.frame_s is None:
            return None
        frames_left = len(self.a.frames) - self.frames_done
        return frames_left * self.frame_s - (time.monotonic() - self.frame_started)

    def set_progress(self, fraction: float, activity: str) -> None:
        """How far the whole task is, 0..1."""
        value = min(max(fraction, 0.0), 1.0)
        self.progress = wire.Progress(task_id=self.a.task_id, progress=value, activity=activity)


class TaskReporter:
    """The `flamenco.commands.Reporter` of one task run."""

    def __init__(
        self,
        run: TaskRun,
        job_dir: Path,
        blobs: BoundedBlobStore,
        outbox: Outbox,
        send: SendUpdate,
        wake_delivery: Callable[[], None],
    ) -> None:
        self.run = run
        self.job_dir = job_dir
        self.blobs = blobs
        self.outbox = outbox
        self.send = send
        self.wake_delivery = wake_delivery

    def log(self, line: str) -> None:
        self.run.last_sign_of_life = time.monotonic()
        self.run.log_lines.append(line)
        self._flush_when_due()

    def progress(self, fraction: float, activity: str) -> None:
        self.run.last_sign_of_life = time.monotonic()
        self.run.set_progress(fraction, activity)
        self._flush_when_due()

    async def output(
        self,
        path: Path,
        frame: int | None = None,
        *,
        name: str | None = None,
        size: tuple[int, int] | None = None,
        file_format: str | None = None,
    ) -> None:
        self.run.last_sign_of_life = time.monotonic()
        if frame is None:
            self._artifact(path, name or self._job_relative_name(path))
        else:
            await self._frame(path, frame, size, file_format)
        self.run.last_sign_of_life = time.monotonic()

    async def _frame(
        self, path: Path, frame: int, size: tuple[int, int] | None, file_format: str | None
    ) -> None:
        a = self.run.a
        if frame not in a.frames:
            raise CommandFailed(f"Frame {frame} is not one of the frames of task {a.name}.")
        # Refused here as the Manager and Server would refuse it: the task fails saying why
        # (UnsafePath, BadFrame), nothing stuck in the outbox.
        check_frame_file_name(path.name)
        expect = FrameExpectation(
            size=size, file_format=file_format, check_blank=bool(a.command.get("check_blank"))
        )
        await asyncio.to_thread(check_frame, path, path.name, frame, expect)
        sha256 = self.blobs.put_file(path)
        self.outbox.add_frame(FrameItem(a.task_id, frame, sha256, path.name, job_id=a.job_id))
        run = self.run
        run.frames_done += 1
        run.frame_started = time.monotonic()
        run.set_progress(run.frames_done / max(len(a.frames), 1), f"frame {frame} saved")
        self.send(run, progress=run.progress.progress, activity=run.progress.activity)

    def _artifact(self, path: Path, name: str) -> None:
        check_artifact_name(name)
        a = self.run.a
        sha256 = self.blobs.put_file(path)
        self.outbox.add_frame(
            FrameItem(a.task_id, 0, sha256, name, kind="artifact", job_id=a.job_id)
        )
        self.wake_delivery()

    def _job_relative_name(self, path: Path) -> str:
        """A file in the job's folder is named by its path there, any other by its name."""
        try:
            return path.absolute().relative_to(self.job_dir.absolute()).as_posix()
        except ValueError:
            return path.name

    def _flush_when_due(self) -> None:
        run = self.run
        if (
            len(run.log_lines) >= LOG_FLUSH_LINES
            or time.monotonic() - run.last_log_flush > LOG_FLUSH_S
        ):
            self.flush_log()

    def flush_log(self, wake: bool = True) -> None:
        """Send the log lines gathered so far; `wake=False` for a task's last ones."""
        run = self.run
        run.last_log_flush = time.monotonic()
        if run.log_lines:
            lines, run.log_lines = run.log_lines, []
            self.send(run, wake=wake, log=lines)
