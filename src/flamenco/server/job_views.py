"""Jobs as they are read: job lists and pages, their tasks a page at a time, runs and history,
frames, thumbnails and other files. Nothing here changes anything."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path, PurePosixPath
from typing import Any

from pydantic import TypeAdapter
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from flamenco import wire
from flamenco.blobs import BlobStore
from flamenco.core.compiler import frame_extension
from flamenco.core.states import (
    TaskStatus,
)
from flamenco.errors import (
    NotFound,
    Unprocessable,
)
from flamenco.server.job_runs import latest_task_ids, runs_of_tasks
from flamenco.server.job_summaries import JobSummaries, count_frames
from flamenco.server.models import (
    AppliedUpdate,
    JobArtifact,
    JobRow,
    OutputRow,
    TaskLogChunk,
    TaskRow,
)
from flamenco.server.records import manager_names
from flamenco.server.transitions import status_counts

MAX_TASK_PAGE = 1000  # tasks, or frames, in one page of a job's list
FRAME_PAGE = 48  # frames in a page unless asked otherwise: the Dashboard's thumbnails
MAX_SEARCH = 200  # characters of text to look for in task names and Workers
MAX_RUN_TASKS = 10_000  # tasks whose runs one answer of a job's latest runs may hold


def job_or_404(s: Session, job_id: str) -> JobRow:
    job = s.get(JobRow, job_id)
    if job is None:
        raise NotFound(f"There is no job with id '{job_id}'.")
    return job


def thumbnail_path(thumbnails_root: Path, job_id: str, frame: int) -> Path:
    """Where the thumbnail of a job's frame is kept."""
    return thumbnails_root / job_id / f"{frame}.jpg"


class JobViews:
    """The read side of JobService (server/jobs.py), which provides these attributes."""

    sessions: sessionmaker
    blobs: BlobStore
    thumbnails_root: Path
    manager_offline: timedelta
    blocklist_threshold: int

    def get(self, job_id: str) -> wire.Job:
        with self.sessions() as s:
            (job,) = self._summaries(s).of([job_or_404(s, job_id)])
            job.frame_extensions = frame_extensions(s, job_id)
            return job

    def list(self) -> list[wire.Job]:
        with self.sessions() as s:
            jobs = s.scalars(select(JobRow).order_by(JobRow.created.desc())).all()
            return self._summaries(s).of(jobs)

    def _summaries(self, s: Session) -> JobSummaries:
        return JobSummaries(s, self.manager_offline, self.blocklist_threshold)

    def tasks(self, job_id: str) -> list[wire.Task]:
        with self.sessions() as s:
            job_or_404(s, job_id)
            managers = manager_names(s)
            rows = s.execute(
                select(*TASK_COLUMNS).where(TaskRow.job_id == job_id).order_by(TaskRow.index)
            )
            return [task_to_wire(row, managers) for row in rows]

    def task_page(
        self, job_id: str, offset: int = 0, limit: int = 100, status: str = "", search: str = ""
    ) -> wire.TaskPage:
        """Tasks `offset` to `offset + limit` of a job in their order, only those of `status`
        and whose name or Worker contains `search` when given; with the job's counts per
        status, the runs of these tasks and when the job started."""
        check_page(offset, limit, status, search)
        with self.sessions() as s:
            job = job_or_404(s, job_id)
            counts = status_counts(s, job_id)
            where = _task_filter(job_id, status, search)
            rows = s.execute(
                select(*TASK_COLUMNS)
                .where(*where)
                .order_by(TaskRow.index)
                .offset(offset)
                .limit(limit)
            )
            managers = manager_names(s)
            tasks = [task_to_wire(row, managers) for row in rows]
            return wire.TaskPage(
                total=sum(counts.values()),
                counts=counts,
                matching=_matching(s, where, counts, status, search),
                offset=offset,
                limit=limit,
                tasks=tasks,
                runs=runs_of_tasks(s, TaskRow.id.in_([t.id for t in tasks])),
                started=job.started,
            )

    def runs(self, job_id: str, last: int | None = None) -> wire.JobRuns:
        """Every run of every task of the job (its timeline), from its applied reports only;
        with `last`, the runs of the job's last `last` tasks to have left the queue, in task
        order (`job_runs.latest_task_ids`): the timeline's end, whatever the job's size."""
        if last is not None and not 1 <= last <= MAX_RUN_TASKS:
            raise Unprocessable(f"'last' must be from 1 to {MAX_RUN_TASKS} tasks, not {last}.")
        with self.sessions() as s:
            job = job_or_404(s, job_id)
            if last is None:
                runs = runs_of_tasks(s, TaskRow.job_id == job_id)
                # The job started with its first run (flamenco.core.runs).
                return wire.JobRuns(started=runs[0]["start"] if runs else None, runs=runs)
            latest = latest_task_ids(s, job_id, last)
            runs = runs_of_tasks(s, TaskRow.id.in_(latest)) if latest else []
            return wire.JobRuns(started=job.started, runs=runs)

    def task_log(self, job_id: str, task_id: str) -> str:
        """The whole log of a task, as the Worker sent it."""
        with self.sessions() as s:
            task = s.get(TaskRow, task_id)
            if task is None or task.job_id != job_id:
                raise NotFound(f"Job '{job_id}' has no task '{task_id}'.")
            chunks = s.scalars(
                select(TaskLogChunk.text)
                .where(TaskLogChunk.task_id == task_id)
                .order_by(TaskLogChunk.id)
            )
            return "".join(chunks)

    def history(self, job_id: str) -> list[wire.TaskEvent]:
        with self.sessions() as s:
            job_or_404(s, job_id)
            managers = manager_names(s)
            rows = s.execute(
                select(
                    AppliedUpdate.task_id,
                    AppliedUpdate.status,
                    AppliedUpdate.outcome,
                    AppliedUpdate.worker,
                    AppliedUpdate.manager_id,
                    AppliedUpdate.received,
                )
                .join(TaskRow, TaskRow.id == AppliedUpdate.task_id)
                .where(TaskRow.job_id == job_id, AppliedUpdate.status.is_not(None))
                .order_by(AppliedUpdate.received)
            )
            # Our own rows: built without validating them again (jobs of 10,000 tasks).
            return [
                wire.TaskEvent.model_construct(
                    task_id=r.task_id,
                    status=TaskStatus(r.status),
                    outcome=r.outcome,
                    worker=r.worker,
                    manager=managers.get(r.manager_id or 0),
                    at=r.received,
                )
                for r in rows
            ]

    def frames(self, job_id: str) -> list[wire.FrameInfo]:
        with self.sessions() as s:
            job_or_404(s, job_id)
            rows = s.execute(
                select(*FRAME_COLUMNS).where(OutputRow.job_id == job_id).order_by(OutputRow.frame)
            )
            return FRAME_LIST.validate_python(rows.mappings())

    def frame_page(self, job_id: str, offset: int = 0, limit: int = FRAME_PAGE) -> wire.FramePage:
        """Frames `offset` to `offset + limit` of a job in frame order, and how many it has: a
        studio's job has 100,000, which a page of thumbnails need not read."""
        check_page(offset, limit)
        with self.sessions() as s:
            job_or_404(s, job_id)
            total = count_frames(s, job_id)
            rows = s.execute(
                select(*FRAME_COLUMNS)
                .where(OutputRow.job_id == job_id)
                .order_by(OutputRow.frame)
                .offset(offset)
                .limit(limit)
            )
            frames = FRAME_LIST.validate_python(rows.mappings())
        return wire.FramePage(total=total, offset=offset, limit=limit, frames=frames)

    def frame_file(self, job_id: str, frame: int) -> tuple[Path, str]:
        with self.sessions() as s:
            job_or_404(s, job_id)
            row = s.scalar(
                select(OutputRow).where(OutputRow.job_id == job_id, OutputRow.frame == frame)
            )
            if row is None:
                raise NotFound(f"Job '{job_id}' has no rendered frame {frame} yet.")
            return self.blobs.path(row.sha256), row.filename

    def thumbnail(self, job_id: str, frame: int) -> Path:
        with self.sessions() as s:
            job_or_404(s, job_id)
        path = thumbnail_path(self.thumbnails_root, job_id, frame)
        if not path.is_file():
            raise NotFound(f"Job '{job_id}' has no thumbnail of frame {frame}.")
        return path

    def artifacts(self, job_id: str) -> list[wire.ArtifactInfo]:
        with self.sessions() as s:
            job_or_404(s, job_id)
            rows = s.scalars(
                select(JobArtifact).where(JobArtifact.job_id == job_id).order_by(JobArtifact.name)
            ).all()
            return [artifact_to_wire(r) for r in rows]

    def artifact_file(self, job_id: str, name: str) -> Path:
        with self.sessions() as s:
            job_or_404(s, job_id)
            sha256 = s.scalar(
                select(JobArtifact.sha256).where(
                    JobArtifact.job_id == job_id, JobArtifact.name == name
                )
            )
        if sha256 is None:
            raise NotFound(f"Job '{job_id}' has no file '{name}' besides its frames.")
        return self.blobs.path(sha256)


def frame_extensions(s: Session, job_id: str) -> list[str]:
    """The extensions of the job's stored frames ('.exr'), lowercase and sorted: one query
    per extension found, for a frame of none found yet, and one more; the frames' names stay
    in the database (a studio's job has 100,000)."""
    names: list[str] = []  # one per suffix as written: PostgreSQL's LIKE minds the case
    while True:
        name = s.scalar(
            select(OutputRow.filename)
            .where(
                OutputRow.job_id == job_id,
                *(
                    ~OutputRow.filename.endswith(PurePosixPath(seen).suffix, autoescape=True)
                    for seen in names
                ),
            )
            .limit(1)
        )
        if name is None:
            return sorted({frame_extension(seen) for seen in names} - {""})
        names.append(name)


def check_page(offset: int, limit: int, status: str = "", search: str = "") -> None:
    """Refuses, in one sentence, a page of tasks or frames that cannot be given."""
    if offset < 0:
        raise Unprocessable(f"The offset must be 0 or more, not {offset}.")
    if not 0 <= limit <= MAX_TASK_PAGE:
        raise Unprocessable(f"The limit must be from 0 to {MAX_TASK_PAGE}, not {limit}.")
    if status and status not in {s.value for s in TaskStatus}:
        known = ", ".join(s.value for s in TaskStatus)
        raise Unprocessable(f"'{status}' is not a task status; the statuses are: {known}.")
    if len(search) > MAX_SEARCH:
        raise Unprocessable(f"The text to look for must be at most {MAX_SEARCH} characters.")


def _task_filter(job_id: str, status: str, search: str) -> list[Any]:
    where: list[Any] = [TaskRow.job_id == job_id]
    if status:
        where.append(TaskRow.status == status)
    if search:
        where.append(
            TaskRow.name.icontains(search, autoescape=True)
            | TaskRow.worker.icontains(search, autoescape=True)
        )
    return where


def _matching(
    s: Session, where: list[Any], counts: dict[str, int], status: str, search: str
) -> int:
    """How many tasks match: known from the counts unless there is text to look for."""
    if search:
        return s.scalar(select(func.count()).select_from(TaskRow).where(*where)) or 0
    return counts.get(status, 0) if status else sum(counts.values())


def artifact_to_wire(row: JobArtifact) -> wire.ArtifactInfo:
    return wire.ArtifactInfo(
        name=row.name, task_id=row.task_id, sha256=row.sha256, size=row.size, created=row.created
    )


FRAME_COLUMNS = tuple(getattr(OutputRow, name) for name in wire.FrameInfo.model_fields)
FRAME_LIST = TypeAdapter(list[wire.FrameInfo])

# The columns a task shows; its command and requirements stay behind (big jobs, fast lists).
TASK_COLUMNS = (
    TaskRow.id,
    TaskRow.job_id,
    TaskRow.index,
    TaskRow.name,
    TaskRow.type,
    TaskRow.status,
    TaskRow.frames,
    TaskRow.progress,
    TaskRow.activity,
    TaskRow.manager_id,
    TaskRow.worker,
    TaskRow.blender_pid,
    TaskRow.failure_count,
    TaskRow.updated,
)


def task_to_wire(t: Any, managers: dict[int, str]) -> wire.Task:
    # Built from our own database rows: no need to validate them again.
    return wire.Task.model_construct(
        id=t.id,
        job_id=t.job_id,
        index=t.index,
        name=t.name,
        type=t.type,
        status=TaskStatus(t.status),
        frames=t.frames,
        progress=t.progress,
        activity=t.activity,
        manager=managers.get(t.manager_id) if t.manager_id else None,
        worker=t.worker,
        blender_pid=t.blender_pid,
        failure_count=t.failure_count,
        updated=t.updated,
    )
