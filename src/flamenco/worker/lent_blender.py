"""The job's warm Blender as the Worker lends it to a command (`flamenco.commands.JobBlender`).

Everything Blender prints goes into the task's log through the command's reporter; the
Worker keeps what it needs to know for itself here: the process's pid (for the task's
record), how long a frame takes (to reserve the next task in time) and which GPU backend
Blender refused (no longer offered).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from flamenco.commands import BlenderReady, CommandFailed, RenderedFrame
from flamenco.core.faults import Fault
from flamenco.worker.blender import Event
from flamenco.worker.blender_pool import BlenderPool
from flamenco.worker.reporting import SendUpdate, TaskReporter, TaskRun
from flamenco.worker.warm_blender import BlenderFailed, EventCallback, ScriptFailed, WarmBlender

OnProgress = Callable[[int, int, int], None]
OnFrame = Callable[[RenderedFrame], Awaitable[None]]


class LentBlender:
    def __init__(
        self,
        pool: BlenderPool,
        run: TaskRun,
        reporter: TaskReporter,
        job_dir: Path,
        send: SendUpdate,
        on_refused: Callable[[str], None],
    ) -> None:
        self.pool = pool
        self.run = run
        self.reporter = reporter
        self.job_dir = job_dir
        self.send = send
        self.on_refused = on_refused  # Blender's sentence when it could not start or open
        self._blender: WarmBlender | None = None

    async def open(self, blend: Path, *, device: str = "CPU", scripts: bool = True) -> BlenderReady:
        try:
            blender = await self.pool.for_job(
                self.run.a.job_id, Path(blend), device.upper(), scripts, self._events()
            )
        except BlenderFailed as exc:
            self.on_refused(str(exc))
            raise
        self._blender = blender
        self.send(self.run, activity="Blender ready", blender_pid=blender.pid)
        resolution = blender.ready.resolution if blender.ready else (0, 0)
        return BlenderReady(
            version=blender.install.version,
            where=blender.install.where,
            pid=blender.pid or 0,
            resolution=resolution,
        )

    async def render(
        self,
        frames: Sequence[int],
        output_dir: Path,
        *,
        output_pattern: str,
        output_format: str = "SCENE",
        persistent_data: bool = True,
        border: tuple[float, float, float, float] | None = None,
        on_progress: OnProgress | None = None,
        on_frame: OnFrame | None = None,
    ) -> None:
        blender = self._opened()
        self.run.frame_started = time.monotonic()
        await blender.render(
            frames,
            output_dir,
            output_pattern=output_pattern,
            output_format=output_format,
            on_event=self._events(on_progress, on_frame),
            persistent_data=persistent_data,
            border=border,
        )

    async def run_script(
        self, script: Path, args: Sequence[str], frame: int | None = None
    ) -> list[Path]:
        blender = self._opened()
        self.run.may_be_silent = True  # a bake may print nothing for long; cancel stops it
        try:
            return await blender.run_script(script, args, self.job_dir, frame, self._events())
        except ScriptFailed as exc:
            # The job's own code raised: it would on every Worker.
            raise CommandFailed(str(exc), Fault.FILE) from None
        finally:
            self.run.may_be_silent = False
            if self.pool.blender is blender:
                await self.pool.stop()  # stopped by now; the pool forgets it

    def _opened(self) -> WarmBlender:
        if self._blender is None:
            raise RuntimeError("open the job's file in Blender first")
        return self._blender

    def _events(
        self, on_progress: OnProgress | None = None, on_frame: OnFrame | None = None
    ) -> EventCallback:
        run, reporter = self.run, self.reporter

        async def on_event(event: Event) -> None:
            run.last_sign_of_life = time.monotonic()
            kind = event.get("event")
            if kind == "log":
                reporter.log(event["line"])
            elif kind == "warning":
                reporter.log(f"WARNING: {event['line']}")
            elif kind == "progress" and event.get("samples") and on_progress is not None:
                on_progress(int(event.get("frame") or 0), event["sample"], event["samples"])
            elif kind == "frame":
                if event.get("seconds") is not None:
                    run.frame_s = float(event["seconds"])
                if on_frame is not None:
                    size = event.get("size")
                    await on_frame(
                        RenderedFrame(
                            frame=int(event["frame"]),
                            path=Path(event["path"]),
                            size=(int(size[0]), int(size[1])) if size else None,
                            file_format=event.get("file_format"),
                        )
                    )

        return on_event
