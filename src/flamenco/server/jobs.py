"""Jobs: submission and compilation into tasks, the actions on them (pause, resume, cancel,
requeue, unblock, priority) and their deletion. What is read of them is `job_views.py`, what
they produce `output_intake.py`; JobService is all three."""

from __future__ import annotations

import logging
import re
import secrets
import shutil
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import delete, select
from sqlalchemy.orm import Session, sessionmaker

from flamenco import wire
from flamenco.blendfile import blend_problem
from flamenco.blobs import BlobStore
from flamenco.core.actions import ActionNotAllowed, ActionPlan, JobAction, plan_job_action
from flamenco.core.compiler import JobCompileError, JobType, compile_job, file_settings
from flamenco.core.notify import BadNotifyUrl, check_notify_url
from flamenco.core.states import (
    FINISHED_JOB_STATUSES,
    InvalidTransition,
    JobStatus,
    TaskStatus,
)
from flamenco.errors import (
    Conflict,
    Forbidden,
    NotFound,
    Unprocessable,
    UnsupportedMedia,
)
from flamenco.job_type_registry import find_job_type
from flamenco.server.blob_gc import BlobCollector
from flamenco.server.doorbell import Doorbell
from flamenco.server.events import EventBus
from flamenco.server.hangs import clear_blocklist, forget_error
from flamenco.server.job_dependencies import checked_after, forget_job, readers_of, record_after
from flamenco.server.job_views import JobViews, job_or_404
from flamenco.server.models import (
    AppliedUpdate,
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
from flamenco.server.output_intake import OutputIntake
from flamenco.server.records import blocked_workers
from flamenco.server.task_inserts import insert_tasks
from flamenco.server.transitions import release_task, set_job_status

log = logging.getLogger("flamenco.server.jobs")


def new_id() -> str:
    return secrets.token_hex(6)


def slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-.")[:60] or "job"


class JobService(JobViews, OutputIntake):
    """Submits jobs, acts on them and deletes them; reads them (JobViews) and takes in what
    their tasks produce (OutputIntake)."""

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

    def submit(self, sub: wire.JobSubmission, submitter: str) -> wire.Job:
        try:
            job_type = find_job_type(sub.type)
            specs = compile_job(job_type, sub.settings)
        except JobCompileError as exc:
            raise Unprocessable(str(exc)) from exc
        notify_url = _checked_notify_url(sub.notify)
        self._check_files(sub, job_type)
        self._check_sites(sub.sites)
        job_id = new_id()
        # a frame split into tiles is still one frame; a preview video's are not its own
        frames_total = len(
            {frame for spec in specs if spec.renders_frames for frame in spec.frames}
        )
        output_dir = self.outputs_root / f"{slug(sub.name)}-{job_id}"
        with self.sessions.begin() as s:
            after = checked_after(s, sub.after)
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
            record_after(s, job, after)
            insert_tasks(s, job_id, specs)  # a few statements, however many tasks
        log.info(
            "job %s submitted: %s, %d tasks", job_id, sub.name, len(specs), extra={"job": job_id}
        )
        self.events.publish("job", id=job_id)
        self.bell.ring()
        return self.get(job_id)

    def _check_files(self, sub: wire.JobSubmission, job_type: JobType) -> None:
        """The files the settings name (the fields the job type marks) are the job's, and
        a scene is a .blend file."""
        # Each path is a safe relative path already: wire.RelativePath checked it on arrival.
        named = {
            key: (str(sub.settings[key]), kind)
            for key, kind in file_settings(job_type.Settings).items()
            if sub.settings.get(key) is not None
        }
        for key, (path, kind) in named.items():
            if path not in sub.files:
                what = "scene" if kind == "scene" else f"file of setting '{key}'"
                raise Unprocessable(f"The {what} '{path}' is not among the job's files.")
        missing = self.blobs.missing(sub.files.values())
        if missing:
            names = [p for p, h in sub.files.items() if h in missing]
            raise Unprocessable(
                f"{len(missing)} file(s) of the job were never uploaded, e.g. '{names[0]}'."
            )
        for path, kind in named.values():
            problem = kind == "scene" and blend_problem(self.blobs.path(sub.files[path]), path)
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

    def act(self, job_id: str, action: JobAction, user: User) -> wire.Job:
        """Pause, resume, cancel or requeue a job; its Managers hear of it at their next sync."""
        with self.sessions.begin() as s:
            job = job_or_404(s, job_id)
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
            job = job_or_404(s, job_id)
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
            job = job_or_404(s, job_id)
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
                job = job_or_404(s, job_id)
                if user is not None:
                    _check_may_change(job, user)
                elif not _finished_before(job, finished_before):
                    return False
                readers = readers_of(s, job)
                if readers and user is None:
                    return False  # kept until the jobs that read its files are done
                if readers:
                    raise Conflict(_still_read(job_id, readers))
                mine = (
                    set(job.files.values())
                    | set(s.scalars(select(OutputRow.sha256).where(OutputRow.job_id == job_id)))
                    | set(s.scalars(select(JobArtifact.sha256).where(JobArtifact.job_id == job_id)))
                )
                forget_job(s, job)
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


def _checked_notify_url(url: str | None) -> str:
    try:
        return check_notify_url(url) if url else ""
    except BadNotifyUrl as exc:
        raise Unprocessable(str(exc)) from exc


def _still_read(job_id: str, readers: list[str]) -> str:
    """Why a completed job that unfinished jobs wait for is not deleted, in one sentence."""
    if len(readers) == 1:
        return (
            f"Job {readers[0]} waits for job {job_id} and gets its files; delete {job_id} once "
            f"{readers[0]} has finished, or cancel {readers[0]} first."
        )
    return (
        f"Jobs {', '.join(readers)} wait for job {job_id} and get its files; delete {job_id} "
        "once they have finished, or cancel them first."
    )


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
