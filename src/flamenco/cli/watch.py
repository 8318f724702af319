"""Waiting for a job without polling: `flamenco submit --wait` and `flamenco jobs watch`.

The one wait loop: it follows the Server's event stream of the job (`GET /api/v1/events?job=`)
and reads the job again when an event says it may have changed (core/watching.py decides),
so it returns as soon as the Server has recorded the end. A dropped stream is reconnected
with back-off, a sentence on stderr, and the job is read again at every (re)connect before
any event is awaited: an end that happened meanwhile is never missed.
"""

from __future__ import annotations

import time
from typing import Protocol

from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn

from flamenco import wire
from flamenco.cli.console import err
from flamenco.client import ApiError, SyncApi, TlsFailure, Unreachable, api_path
from flamenco.core.watching import (
    GREETING,
    JobProgress,
    Reaction,
    SseLines,
    exit_code,
    line_due,
    reaction,
    reconnect_delay,
)
from flamenco.server.events import PING_S

# The Server pings every PING_S; a stream silent for longer than two pings has died unseen.
SILENT_STREAM_S = 2 * PING_S + 5


class ProgressView(Protocol):
    def show(self, job: wire.Job) -> None: ...

    def say(self, text: str, style: str) -> None: ...


def progress_of(job: wire.Job) -> JobProgress:
    return JobProgress(
        str(job.status),
        job.frames_done,
        job.frames_total,
        job.tasks_completed,
        job.tasks_total,
        job.progress,
    )


class BarView:
    """A live Rich progress bar of frames and tasks, for a terminal."""

    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        self.bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TaskProgressColumn(),
            TextColumn("{task.fields[frames]}"),
            TextColumn("{task.fields[tasks]}"),
            console=err,
        )
        self.task = self.bar.add_task(f"job {job_id}", total=1.0, frames="", tasks="")

    def __enter__(self) -> BarView:
        self.bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.stop()

    def show(self, job: wire.Job) -> None:
        self.bar.update(
            self.task,
            completed=job.progress,
            description=f"job {self.job_id} {job.status}",
            frames=f"{job.frames_done}/{job.frames_total} frames",
            tasks=f"{job.tasks_completed}/{job.tasks_total} tasks",
        )

    def say(self, text: str, style: str) -> None:
        self.bar.console.print(text, style=style)


class LineView:
    """A line per change, at most one a second (and the final one at once), for a stderr
    that is a pipe or a log: a long job does not flood it."""

    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        self.shown: JobProgress | None = None
        self.shown_at: float | None = None

    def __enter__(self) -> LineView:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def show(self, job: wire.Job) -> None:
        now_showing, now = progress_of(job), time.monotonic()
        since = None if self.shown_at is None else now - self.shown_at
        if line_due(self.shown, now_showing, since):
            err.print(now_showing.line(self.job_id))
            self.shown, self.shown_at = now_showing, now

    def say(self, text: str, style: str) -> None:
        err.print(text, style=style)


class JobWatch:
    """One job followed to its end; `run` returns the job in its final status."""

    def __init__(self, api: SyncApi, job_id: str, view: ProgressView) -> None:
        self.api, self.job_id, self.view = api, job_id, view
        self.told: dict[str, str] = {}
        self.drops = 0  # in a row: the back-off starts again once a stream connects
        self.connected = False  # a Server never reached (a wrong URL) is told, not retried

    def run(self) -> wire.Job:
        while True:
            try:
                job = self._follow_stream()
                if job is not None:
                    return job
                why = "the Server closed it"
            except TlsFailure:
                raise  # an untrusted certificate stays untrusted
            except Unreachable as exc:
                if not self.connected:
                    raise
                why = str(exc).rstrip(".")
            except ApiError as exc:
                if exc.status < 500:  # the job is gone, or the token: waiting will not mend it
                    raise
                why = exc.message.rstrip(".")
            delay = reconnect_delay(self.drops)
            self.drops += 1
            self.view.say(
                f"The event stream of job {self.job_id} dropped ({why}); "
                f"reconnecting in {delay:.1f} s.",
                "yellow",
            )
            time.sleep(delay)

    def _follow_stream(self) -> wire.Job | None:
        """The job once it ended, or None when the stream closed before."""
        params = {"job": self.job_id}
        with self.api.stream_lines("/api/v1/events", params, SILENT_STREAM_S) as lines:
            parser = SseLines()
            for line in lines:
                kind = parser.feed(line)
                if kind == GREETING:
                    self.drops, self.connected = 0, True
                if kind is None or reaction(kind) is not Reaction.REREAD:
                    continue
                job = self._read()
                if exit_code(job.status) is not None:
                    return job
        return None

    def _read(self) -> wire.Job:
        job = self.api.call("GET", api_path("jobs", self.job_id), wire.Job)
        # As soon as the job has an error or waits for a Worker, and whenever that changes:
        # a job that cannot go on must not look like a slow one.
        news = {
            "red": f"Last error: {job.last_error}" if job.last_error else "",
            "yellow": job.waiting_reason or "",
        }
        for style, text in news.items():
            if text and self.told.get(style) != text:
                self.view.say(text, style)
        self.told = news
        self.view.show(job)
        return job


def watch_job(api: SyncApi, job_id: str) -> wire.Job:
    """Show the job's progress on stderr until it ends; return it in its final status."""
    view: BarView | LineView = BarView(job_id) if err.is_terminal else LineView(job_id)
    with view:
        return JobWatch(api, job_id, view).run()


def exit_code_of(job: wire.Job) -> int:
    """0 completed, 1 failed, 2 canceled (core/watching.py EXIT_CODES)."""
    code = exit_code(job.status)
    assert code is not None, f"job {job.id} is not over: {job.status}"
    return code
