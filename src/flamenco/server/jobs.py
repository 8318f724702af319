"""Jobs: submission, compilation into tasks, queries, and the frames they produce."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import secrets
import shutil
from collections.abc import AsyncIterable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session, sessionmaker

from flamenco import wire
from flamenco.blendfile import blend_problem
from flamenco.blobs import BlobStore
from flamenco.core.actions import ActionNotAllowed, ActionPlan, JobAction, plan_job_action
from flamenco.core.compiler import JobCompileError, compile_job
from flamenco.core.matching import Requirements, job_waiting_reason
from flamenco.core.names import check_artifact_name, check_frame_file_name, quote_name
from flamenco.core.notify import BadNotifyUrl, check_notify_url
from flamenco.core.runs import (
    end_stopped_runs,
    last_failed_task_ids,
    mark_retried_failures,
    open_task_ids,
    parse_time,
    task_runs,
)
from flamenco.core.states import (
    FINISHED_JOB_STATUSES,
    RUNNABLE_TASK_STATUSES,
    InvalidTransition,
    JobStatus,
    TaskStatus,
)
from flamenco.db import utcnow
from flamenco.errors import (
    BadRequest,
    Conflict,
    FlamencoError,
    Forbidden,
    NotFound,
    Unprocessable,
    UnsupportedMedia,
    writing,
)
from flamenco.frame_check import BadFrame, check_frame, job_expectation
from flamenco.images import image_size, save_jpeg
from flamenco.server.blob_gc import BlobCollector
from flamenco.server.doorbell import Doorbell
from flamenco.server.events import EventBus
from flamenco.server.hangs import clear_blocklist, forget_error, last_error
from flamenco.server.models import (
    AppliedUpdate,
    BlobRow,
    BlocklistClear,
    JobArtifact,
    JobError,
    JobRow,
    JobSite,
    ManagerRow,
    OutputRow,
    TaskLogChunk,
    TaskRow,
    User,
)
from flamenco.server.outputs import place_output, remove_output
from flamenco.server.records import blocked_workers, manager_names, online_workers
from flamenco.server.transitions import release_task, set_job_status, status_counts

log = logging.getLogger("flamenco.server.jobs")

THUMBNAIL_SIZE = 256  # longest side, in pixels
THUMBNAIL_QUALITY = 80
MAX_TASK_PAGE = 1000  # tasks in one page of a job's tasks
MAX_SEARCH = 200  # characters of text to look for in task names and Workers


def new_id() -> str:
    return secrets.token_hex(6)


def slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-.")[:60] or "job"


class JobService:
    def __init__(
        self,
        sessions: sessionmaker,
        blobs: BlobStore,
        blob_gc: BlobCollector,
        outputs_root: Path,
        manager_offline_s: float = 30.0,
        blocklist_threshold: int = 3,
        thumbnails_root: Path | None = None,
        events: EventBus | None = None,
        bell: Doorbell | None = None,
    ) -> None:
        self.events = events or EventBus()
        self.bell = bell or Doorbell()  # rung when Managers waiting for tasks should look again
        self.sessions = sessions
        self.blobs = blobs
        self.blob_gc = blob_gc
        self.outputs_root = outputs_root
        self.thumbnails_root = thumbnails_root or outputs_root.parent / "thumbnails"
        self.manager_offline = timedelta(seconds=manager_offline_s)
        self.blocklist_threshold = blocklist_threshold

    # ---- submission ------------------------------------------------------------------------

    def submit(self, sub: wire.JobSubmission, submitter: str) -> wire.Job:
        try:
            specs = compile_job(sub.type, sub.settings)
        except JobCompileError as exc:
            raise Unprocessable(str(exc)) from exc
        notify_url = _checked_notify_url(sub.notify)
        self._check_files(sub)
        self._check_sites(sub.sites)
        job_id = new_id()
        frames_total = sum(len(spec.frames) for spec in specs if spec.type == "blender")
        output_dir = self.outputs_root / f"{slug(sub.name)}-{job_id}"
        with self.sessions.begin() as s:
            job = JobRow(
                id=job_id,
                name=sub.name,
                type=sub.type,
                status=JobStatus.QUEUED,
                priority=sub.priority,
                submitter=submitter,
                settings=sub.settings,
                files=sub.files,
                sites=sorted(set(sub.sites)),
                output_dir=str(output_dir),
                frames_total=frames_total,
                notify_url=notify_url,
            )
            s.add(job)
            s.flush()
            s.add_all(JobSite(job_id=job_id, site=site) for site in job.sites)
            for index, spec in enumerate(specs):
                s.add(
                    TaskRow(
                        id=secrets.token_hex(8),
                        job_id=job_id,
                        index=index,
                        name=spec.name,
                        type=spec.type,
                        status=TaskStatus.QUEUED,
                        frames=list(spec.frames),
                        command=spec.command,
                        depends_on=list(spec.depends_on),
                        requirements=spec.requirements.to_dict(),
                    )
                )
        log.info(
            "job %s submitted: %s, %d tasks", job_id, sub.name, len(specs), extra={"job": job_id}
        )
        self.events.publish("job", id=job_id)
        self.bell.ring()
        return self.get(job_id)

    def _check_files(self, sub: wire.JobSubmission) -> None:
        # Each path is a safe relative path already: wire.RelativePath checked it on arrival.
        blend = str(sub.settings.get("blend", ""))
        if blend not in sub.files:
            raise Unprocessable(f"The scene '{blend}' is not among the job's files.")
        missing = self.blobs.missing(sub.files.values())
        if missing:
            names = [p for p, h in sub.files.items() if h in missing]
            raise Unprocessable(
                f"{len(missing)} file(s) of the job were never uploaded, e.g. '{names[0]}'."
            )
        problem = blend_problem(self.blobs.path(sub.files[blend]), blend)
        if problem:
            raise UnsupportedMedia(problem)

    def _check_sites(self, sites: list[str]) -> None:
        if not sites:
            return
        with self.sessions() as s:
            known = set(s.scalars(select(ManagerRow.name)))
        unknown = sorted(set(sites) - known)
        if unknown:
            names = ", ".join(sorted(known)) or "none yet"
            raise Unprocessable(f"Unknown site '{unknown[0]}'; the farm's sites are: {names}.")

    # ---- queries ---------------------------------------------------------------------------

    def _job_or_404(self, s: Session, job_id: str) -> JobRow:
        job = s.get(JobRow, job_id)
        if job is None:
            raise NotFound(f"There is no job with id '{job_id}'.")
        return job

    def get(self, job_id: str) -> wire.Job:
        with self.sessions() as s:
            return self._to_wire(s, self._job_or_404(s, job_id))

    def list(self) -> list[wire.Job]:
        with self.sessions() as s:
            jobs = s.scalars(select(JobRow).order_by(JobRow.created.desc())).all()
            return [self._to_wire(s, job) for job in jobs]

    def _to_wire(self, s: Session, job: JobRow) -> wire.Job:
        # Aggregates in SQL: a job may have tens of thousands of tasks.
        per_status = {
            TaskStatus(status): (count, progress or 0.0)
            for status, count, progress in s.execute(
                select(TaskRow.status, func.count(), func.sum(TaskRow.progress))
                .where(TaskRow.job_id == job.id)
                .group_by(TaskRow.status)
            )
        }
        frames_done = (
            s.scalar(select(func.count()).select_from(OutputRow).where(OutputRow.job_id == job.id))
            or 0
        )
        total = sum(count for count, _ in per_status.values())
        completed = per_status.get(TaskStatus.COMPLETED, (0, 0.0))[0]
        blocked = blocked_workers(s, {job.id}, self.blocklist_threshold).get(job.id, set())
        # Tasks weigh the same: chunks are of one size but for the last one.
        done = completed + sum(
            progress
            for status, (_, progress) in per_status.items()
            if status != TaskStatus.COMPLETED
        )
        return wire.Job(
            id=job.id,
            name=job.name,
            type=job.type,
            status=JobStatus(job.status),
            priority=job.priority,
            submitter=job.submitter,
            settings=job.settings,
            created=job.created,
            updated=job.updated,
            tasks_total=total,
            tasks_completed=completed,
            frames_total=job.frames_total,
            frames_done=frames_done,
            progress=round(min(done / (total or 1), 1.0), 4),
            output_dir=job.output_dir,
            sites=job.sites,
            waiting_reason=self._waiting_reason(s, job, per_status, blocked),
            blocklist=sorted(blocked),
            last_error=last_error(s, job.id),
        )

    def _waiting_reason(
        self, s: Session, job: JobRow, per_status: dict[TaskStatus, Any], blocked: set[str]
    ) -> str | None:
        """Why a job's remaining tasks find no Worker, when that is so. A leased task counts
        as remaining: its site may hold it with no Worker there allowed to run it."""
        if job.status not in (JobStatus.QUEUED, JobStatus.ACTIVE):
            return None
        waiting = (*RUNNABLE_TASK_STATUSES, TaskStatus.LEASED)
        if not any(status in per_status for status in waiting):
            return None
        requirements = s.scalar(
            select(TaskRow.requirements)
            .where(TaskRow.job_id == job.id, TaskRow.status.in_(waiting))
            .order_by(TaskRow.index)
            .limit(1)
        )
        workers = online_workers(s, utcnow() - self.manager_offline, job.sites)
        return job_waiting_reason(Requirements.from_dict(requirements), workers, blocked)

    def tasks(self, job_id: str) -> list[wire.Task]:
        with self.sessions() as s:
            self._job_or_404(s, job_id)
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
            self._job_or_404(s, job_id)
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
                runs=_runs(s, TaskRow.id.in_([t.id for t in tasks])),
                started=_started(s, job_id),
            )

    def runs(self, job_id: str) -> wire.JobRuns:
        """Every run of every task of the job (its timeline), from its applied reports only."""
        with self.sessions() as s:
            self._job_or_404(s, job_id)
            runs = _runs(s, TaskRow.job_id == job_id)
        # The job started with its first run (flamenco.core.runs).
        return wire.JobRuns(started=runs[0]["start"] if runs else None, runs=runs)

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
            self._job_or_404(s, job_id)
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
            self._job_or_404(s, job_id)
            rows = s.execute(
                select(*FRAME_COLUMNS).where(OutputRow.job_id == job_id).order_by(OutputRow.frame)
            )
            return FRAME_LIST.validate_python(rows.mappings())

    def frame_file(self, job_id: str, frame: int) -> tuple[Path, str]:
        with self.sessions() as s:
            self._job_or_404(s, job_id)
            row = s.scalar(
                select(OutputRow).where(OutputRow.job_id == job_id, OutputRow.frame == frame)
            )
            if row is None:
                raise NotFound(f"Job '{job_id}' has no rendered frame {frame} yet.")
            return self.blobs.path(row.sha256), row.filename

    def thumbnail(self, job_id: str, frame: int) -> Path:
        with self.sessions() as s:
            self._job_or_404(s, job_id)
        path = self._thumbnail_path(job_id, frame)
        if not path.is_file():
            raise NotFound(f"Job '{job_id}' has no thumbnail of frame {frame}.")
        return path

    def _thumbnail_path(self, job_id: str, frame: int) -> Path:
        return self.thumbnails_root / job_id / f"{frame}.jpg"

    def artifacts(self, job_id: str) -> list[wire.ArtifactInfo]:
        with self.sessions() as s:
            self._job_or_404(s, job_id)
            rows = s.scalars(
                select(JobArtifact).where(JobArtifact.job_id == job_id).order_by(JobArtifact.name)
            ).all()
            return [_artifact_to_wire(r) for r in rows]

    def artifact_file(self, job_id: str, name: str) -> Path:
        with self.sessions() as s:
            self._job_or_404(s, job_id)
            sha256 = s.scalar(
                select(JobArtifact.sha256).where(
                    JobArtifact.job_id == job_id, JobArtifact.name == name
                )
            )
        if sha256 is None:
            raise NotFound(f"Job '{job_id}' has no file '{name}' besides its frames.")
        return self.blobs.path(sha256)

    # ---- frames ----------------------------------------------------------------------------

    async def receive_frame(
        self,
        manager_id: int,
        task_id: str,
        frame: int,
        filename: str,
        sha256: str,
        body: AsyncIterable[bytes],
    ) -> wire.FrameInfo:
        check_frame_file_name(filename)
        with self.sessions() as s:
            task = s.get(TaskRow, task_id)
            if task is None or task.manager_id != manager_id:
                raise NotFound(f"Task '{task_id}' is not leased to this Manager.")
            if frame not in task.frames:
                raise BadRequest(f"Frame {frame} is not one of the frames of task '{task_id}'.")
            job_id = task.job_id
            expect = job_expectation(self._job_or_404(s, job_id).settings)
        had_blob = self.blobs.has(sha256)
        with writing(f"Frame {frame} of job {job_id}"):
            digest = await self.blobs.put_stream(body, expected=sha256)
        try:  # checked again as it arrives: a bad frame is a 422 and nothing of it is kept
            await asyncio.to_thread(check_frame, self.blobs.path(digest), filename, frame, expect)
        except BadFrame as exc:
            if not had_blob:
                self.blobs.path(digest).unlink(missing_ok=True)
            log.warning("task %s: %s", task_id, exc.message, extra={"job": job_id, "task": task_id})
            raise
        # Off the event loop: making the thumbnail of a large frame takes a while.
        return await asyncio.to_thread(self._record_frame, job_id, task_id, frame, filename, digest)

    def _record_frame(
        self, job_id: str, task_id: str, frame: int, filename: str, digest: str
    ) -> wire.FrameInfo:
        path = self.blobs.path(digest)
        size = path.stat().st_size
        width = height = None
        try:
            width, height = image_size(path)
        except Exception:
            log.info("frame %d of job %s: size unknown", frame, job_id, extra={"job": job_id})
        # The file first, then its row: frames_done never counts a file that is not there.
        what = f"Frame {frame} ({quote_name(filename)}) of job {job_id}"
        dest = self._place(job_id, path, filename, what)
        self._write_thumbnail(job_id, frame, path)
        with self._committing(dest) as s:
            self._job_or_404(s, job_id)
            if s.get(BlobRow, digest) is None:
                s.add(BlobRow(sha256=digest, size=size))
            row = s.scalar(
                select(OutputRow).where(OutputRow.job_id == job_id, OutputRow.frame == frame)
            )
            if row is None:
                row = OutputRow(job_id=job_id, frame=frame)
                s.add(row)
            row.task_id, row.sha256, row.size = task_id, digest, size
            row.width, row.height, row.filename = width, height, filename
        self.events.publish("frame", job_id=job_id, frame=frame)
        self.events.publish("job", id=job_id)
        return wire.FrameInfo(
            frame=frame,
            task_id=task_id,
            sha256=digest,
            size=size,
            width=width,
            height=height,
            filename=filename,
        )

    def _write_thumbnail(self, job_id: str, frame: int, source: Path) -> None:
        """A small JPEG of the frame for the Dashboard (of an EXR, its beauty in sRGB); none for
        what neither Pillow nor OpenEXR can read."""
        dest = self._thumbnail_path(job_id, frame)
        try:
            save_jpeg(source, dest, THUMBNAIL_QUALITY, max_side=THUMBNAIL_SIZE)
        except Exception as exc:
            dest.unlink(missing_ok=True)  # a thumbnail of an earlier render would be wrong
            log.info(
                "frame %d of job %s: no thumbnail (%s)", frame, job_id, exc, extra={"job": job_id}
            )

    def _place(self, job_id: str, source: Path, name: str, what: str) -> Path:
        """Put an output's file in place in the job's output folder, or say why it cannot be."""
        with self.sessions() as s:
            output_dir = Path(self._job_or_404(s, job_id).output_dir)
        try:
            return place_output(source, output_dir, name, what)
        except FlamencoError as exc:
            log.error("job %s: %s", job_id, exc.message, extra={"job": job_id})
            raise

    @contextlib.contextmanager
    def _committing(self, placed: Path) -> Iterator[Session]:
        """A transaction for the row of a file just placed; the file goes if the row cannot
        be committed (its job was deleted meanwhile), leaving nothing behind."""
        try:
            with self.sessions.begin() as s:
                yield s
        except BaseException:
            remove_output(placed)
            raise

    # ---- artifacts: other outputs of a job, such as its preview video ------------------------

    async def receive_artifact(
        self,
        manager_id: int,
        task_id: str,
        name: str,
        sha256: str,
        body: AsyncIterable[bytes],
    ) -> wire.ArtifactInfo:
        check_artifact_name(name)
        with self.sessions() as s:
            task = s.get(TaskRow, task_id)
            if task is None or task.manager_id != manager_id:
                raise NotFound(f"Task '{task_id}' is not leased to this Manager.")
            job_id = task.job_id
        with writing(f"The file {quote_name(name)} of job {job_id}"):
            digest = await self.blobs.put_stream(body, expected=sha256)
        return await asyncio.to_thread(self._record_artifact, job_id, task_id, name, digest)

    def _record_artifact(
        self, job_id: str, task_id: str, name: str, digest: str
    ) -> wire.ArtifactInfo:
        path = self.blobs.path(digest)
        size = path.stat().st_size
        dest = self._place(job_id, path, name, f"The file {quote_name(name)} of job {job_id}")
        with self._committing(dest) as s:
            self._job_or_404(s, job_id)
            if s.get(BlobRow, digest) is None:
                s.add(BlobRow(sha256=digest, size=size))
            row = s.scalar(
                select(JobArtifact).where(JobArtifact.job_id == job_id, JobArtifact.name == name)
            )
            if row is None:
                row = JobArtifact(job_id=job_id, name=name)
                s.add(row)
            row.task_id, row.sha256, row.size, row.created = task_id, digest, size, utcnow()
            info = _artifact_to_wire(row)
        log.info("job %s: %s stored (%d bytes)", job_id, name, size, extra={"job": job_id})
        self.events.publish("job", id=job_id)
        return info

    # ---- actions ---------------------------------------------------------------------------

    def act(self, job_id: str, action: JobAction, user: User) -> wire.Job:
        """Pause, resume, cancel or requeue a job; its Managers hear of it at their next sync."""
        with self.sessions.begin() as s:
            job = self._job_or_404(s, job_id)
            _check_may_change(job, user)
            try:
                plan = plan_job_action(action, JobStatus(job.status))
            except ActionNotAllowed as exc:
                raise Conflict(str(exc)) from exc
            try:
                _apply_plan(s, job, plan)
            except InvalidTransition as exc:  # the plan and the tables disagree: nothing written
                log.error("job %s: %s refused: %s", job_id, action, exc, extra={"job": job_id})
                raise Conflict(str(exc)) from exc
        log.info("job %s: %s by %s", job_id, action, user.name, extra={"job": job_id})
        self.events.publish("job", id=job_id)
        self.bell.ring()
        return self.get(job_id)

    def unblock(self, job_id: str, worker: str | None, user: User) -> wire.Job:
        """Let `worker`, or every Worker (None), kept off the job after repeated failures
        take its tasks again; its Managers hear of it at their next sync."""
        with self.sessions.begin() as s:
            job = self._job_or_404(s, job_id)
            _check_may_change(job, user)
            blocked = blocked_workers(s, {job_id}, self.blocklist_threshold).get(job_id, set())
            if worker is not None and worker not in blocked:
                names = ", ".join(sorted(blocked)) or "none"
                raise NotFound(
                    f"Worker '{worker}' is not kept off job '{job_id}'; those kept off: {names}."
                )
            clear_blocklist(s, job_id, worker)
        log.info(
            "job %s: %s unblocked by %s",
            job_id,
            worker or "every Worker",
            user.name,
            extra={"job": job_id, "worker": worker},
        )
        self.events.publish("job", id=job_id)
        self.bell.ring()
        return self.get(job_id)

    def set_priority(self, job_id: str, priority: int, user: User) -> wire.Job:
        with self.sessions.begin() as s:
            job = self._job_or_404(s, job_id)
            _check_may_change(job, user)
            job.priority = priority
        self.events.publish("job", id=job_id)
        return self.get(job_id)

    def delete(
        self, job_id: str, user: User | None, finished_before: datetime | None = None
    ) -> bool:
        """Remove the job, its tasks, frames, thumbnails and artifacts, and the blobs no other
        job uses and no submission may still want (`blob_gc.py`).

        `user` None is the Server itself removing a job finished and untouched since before
        `finished_before` (--keep-days, `retention.py`): a job requeued or changed meanwhile
        stays, and False says so.
        """
        with self.blob_gc.freeing():  # no submission claims a blob while we decide and free
            with self.sessions.begin() as s:
                job = self._job_or_404(s, job_id)
                if user is not None:
                    _check_may_change(job, user)
                elif not _finished_before(job, finished_before):
                    return False
                mine = (
                    set(job.files.values())
                    | set(s.scalars(select(OutputRow.sha256).where(OutputRow.job_id == job_id)))
                    | set(s.scalars(select(JobArtifact.sha256).where(JobArtifact.job_id == job_id)))
                )
                task_ids = select(TaskRow.id).where(TaskRow.job_id == job_id)
                s.execute(delete(TaskLogChunk).where(TaskLogChunk.task_id.in_(task_ids)))
                s.execute(delete(AppliedUpdate).where(AppliedUpdate.task_id.in_(task_ids)))
                for table in (OutputRow, JobArtifact, JobSite, BlocklistClear, JobError, TaskRow):
                    s.execute(delete(table).where(table.job_id == job_id))
                s.delete(job)
                s.flush()
                unused = self.blob_gc.unused(s, mine, _blobs_in_use(s))
                output_dir = Path(job.output_dir)
            # The rows went first: a crash now leaves spare files, never rows without their file.
            self.blob_gc.free(unused)
        shutil.rmtree(output_dir, ignore_errors=True)
        shutil.rmtree(self.thumbnails_root / job_id, ignore_errors=True)
        self.events.publish("job", id=job_id)
        self.bell.ring()
        log.info(
            "job %s deleted by %s, %d blobs freed",
            job_id,
            user.name if user is not None else "the Server (keep-days)",
            len(unused),
            extra={"job": job_id},
        )
        return True


def check_page(offset: int, limit: int, status: str, search: str) -> None:
    """Refuses, in one sentence, a page of tasks that cannot be given."""
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


def _started(s: Session, job_id: str) -> datetime | None:
    """When the job's first run started: its first applied `active` report."""
    started = s.scalar(
        select(func.min(AppliedUpdate.received))
        .join(TaskRow, TaskRow.id == AppliedUpdate.task_id)
        .where(
            TaskRow.job_id == job_id,
            AppliedUpdate.status == TaskStatus.ACTIVE,
            AppliedUpdate.outcome == "applied",
        )
    )
    return None if started is None else parse_time(started)


def _runs(s: Session, *where: Any) -> list[dict[str, Any]]:
    """The runs (flamenco.core.runs) of the tasks that match `where`, as `wire.TaskRun`
    fields: from the applied status reports alone, five narrow columns each."""
    reports = s.execute(
        select(
            AppliedUpdate.task_id,
            AppliedUpdate.status,
            AppliedUpdate.worker,
            AppliedUpdate.received,
            TaskRow.name,
        )
        .join(TaskRow, TaskRow.id == AppliedUpdate.task_id)
        .where(*where, AppliedUpdate.status.is_not(None), AppliedUpdate.outcome == "applied")
        .order_by(AppliedUpdate.received)
    ).all()
    runs = task_runs(report[:4] for report in reports)  # (task id, status, worker, when)
    states = _task_states(s, open_task_ids(runs) | last_failed_task_ids(runs))
    end_stopped_runs(runs, states)
    mark_retried_failures(runs, states)
    names = {report.task_id: report.name for report in reports}
    return [
        {
            "task_id": run.task_id,
            "task_name": names[run.task_id],
            "worker": run.worker,
            "start": run.start,
            "end": run.end,
            "outcome": run.outcome,
        }
        for run in runs
    ]


def _task_states(s: Session, task_ids: set[str], chunk: int = 500) -> dict[str, Any]:
    """Task id -> its status and last change, for a few tasks."""
    ids = sorted(task_ids)
    states: dict[str, Any] = {}
    for start in range(0, len(ids), chunk):
        query = select(TaskRow.id, TaskRow.status, TaskRow.updated).where(
            TaskRow.id.in_(ids[start : start + chunk])
        )
        states.update((row.id, row._mapping) for row in s.execute(query))
    return states


def _checked_notify_url(url: str | None) -> str:
    try:
        return check_notify_url(url) if url else ""
    except BadNotifyUrl as exc:
        raise Unprocessable(str(exc)) from exc


def _finished_before(job: JobRow, cutoff: datetime | None) -> bool:
    return cutoff is not None and job.status in FINISHED_JOB_STATUSES and job.updated < cutoff


def _check_may_change(job: JobRow, user: User) -> None:
    if not user.is_admin and job.submitter != user.name:
        raise Forbidden(f"Only {job.submitter} or an administrator can change job '{job.id}'.")


def _apply_plan(s: Session, job: JobRow, plan: ActionPlan) -> None:
    """Move the job and each of its tasks as the action's plan says, through the door."""
    for task in s.scalars(select(TaskRow).where(TaskRow.job_id == job.id)):
        new = plan.task_changes.get(TaskStatus(task.status))
        if new is not None:
            release_task(task, new)
            if plan.reset_failures:
                task.failure_count = 0
    if plan.reset_failures:  # a requeue: every Worker may try again, afresh
        clear_blocklist(s, job.id)
        forget_error(s, job.id)
    set_job_status(job, plan.job_status)


def _blobs_in_use(s: Session) -> set[str]:
    used = set(s.scalars(select(OutputRow.sha256))) | set(s.scalars(select(JobArtifact.sha256)))
    for files in s.scalars(select(JobRow.files)):
        used.update(files.values())
    return used


def _artifact_to_wire(row: JobArtifact) -> wire.ArtifactInfo:
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
