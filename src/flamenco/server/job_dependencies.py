"""Jobs that wait for jobs (submit --after): which jobs a job waits for, whether it still waits,
and why, in words.

Leasing must not look at other jobs for every sync, so whether a job still waits is a column,
`jobs.waits_for_jobs`, kept here: the status door (`transitions.set_job_status`) calls
`job_status_changed` in the transaction of every job status change, which re-evaluates the
jobs that wait for that one (and the job itself when it is queued again). A job waits while
any job it names has not completed; one that failed or was canceled keeps it waiting until it
is requeued (and completes) or the waiting job is canceled. A job names only jobs that exist
when it is submitted and never changes them, so no cycle can arise.

The artifacts of the jobs a job waits for (a blender-script bake's cache, say) are files of
that job too, at their names (`awaited_artifacts`, added to what its leases list), so a bake
and the render that reads it need no shared disk.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from sqlalchemy import bindparam, case, delete, event, func, or_, select
from sqlalchemy.orm import Session, object_session, sessionmaker

from flamenco.core.compiler import preview_frame_path
from flamenco.core.states import FINISHED_JOB_STATUSES, JobStatus, TaskStatus
from flamenco.db import in_chunks
from flamenco.errors import Unprocessable
from flamenco.server.events import EventBus
from flamenco.server.models import JobArtifact, JobDependency, JobRow, OutputRow, TaskRow

log = logging.getLogger("flamenco.server.job_dependencies")

MAX_AFTER = 100  # jobs one job may wait for
EVENTS_KEY = "flamenco.job_events"  # the EventBus on the sessions' info (install_events)
CHANGED_KEY = "flamenco.jobs_waiting_changed"  # a session's re-evaluated jobs, until commit


def install_events(sessions: sessionmaker, events: EventBus) -> None:
    """Let a re-evaluated waiting job be announced (a "job" event, after the commit), so that
    the Dashboard and `jobs watch` show its new waiting reason although it did not move."""
    sessions.configure(info={**sessions.kw.get("info", {}), EVENTS_KEY: events})


def checked_after(s: Session, after: list[str]) -> list[str]:
    """The jobs to wait for, each once, in their order; one that does not exist is refused.
    Every user may see every job (the job list is the farm's), so any job may be named."""
    wanted = list(dict.fromkeys(job_id.strip() for job_id in after if job_id.strip()))
    if len(wanted) > MAX_AFTER:
        raise Unprocessable(f"A job can wait for at most {MAX_AFTER} jobs, not {len(wanted)}.")
    known = set(s.scalars(select(JobRow.id).where(JobRow.id.in_(wanted)))) if wanted else set()
    for job_id in wanted:
        if job_id not in known:
            raise Unprocessable(f"There is no job with id '{job_id}' to wait for.")
    return wanted


def record_after(s: Session, job: JobRow, after: list[str]) -> None:
    """Make the new job wait for `after` (checked by `checked_after`)."""
    s.add_all(JobDependency(job_id=job.id, after_job_id=other) for other in after)
    job.waits_for_jobs = bool(after) and _still_waits(s, job.id)


def job_status_changed(job: JobRow, new: JobStatus) -> None:
    """Re-evaluate, in the same transaction, the jobs waiting for `job`, which just entered
    `new`, and `job` itself when it is queued again (requeued, resumed)."""
    s = object_session(job)
    if s is None:
        return
    s.flush()  # the new status must be seen by the queries below
    if new == JobStatus.QUEUED:
        job.waits_for_jobs = _still_waits(s, job.id)
    dependents = s.scalars(
        select(JobRow)
        .join(JobDependency, JobDependency.job_id == JobRow.id)
        .where(JobDependency.after_job_id == job.id, JobRow.status == JobStatus.QUEUED)
    )
    for dependent in dependents:
        waits = _still_waits(s, dependent.id)
        _announce_after_commit(s, dependent.id)
        if waits != dependent.waits_for_jobs:
            dependent.waits_for_jobs = waits
            log.info(
                "job %s: %s job %s (%s)",
                dependent.id,
                "waits again for" if waits else "no longer waits, after",
                job.id,
                new,
                extra={"job": dependent.id},
            )


def forget_job(s: Session, job: JobRow) -> None:
    """Before `job` is deleted: its own waits go; jobs waiting for it stop waiting for it only
    if it had completed (one deleted unfinished keeps them waiting, with that reason)."""
    s.execute(delete(JobDependency).where(JobDependency.job_id == job.id))
    if job.status == JobStatus.COMPLETED:
        s.execute(delete(JobDependency).where(JobDependency.after_job_id == job.id))


def readers_of(s: Session, job: JobRow) -> list[str]:
    """The unfinished jobs that wait for `job`, which completed, and so get its artifacts and
    frames in the leases of their tasks still to run (`awaited_artifacts`, `video_frames`):
    deleting `job` now would take those files from them. In id order."""
    if job.status != JobStatus.COMPLETED:
        return []  # a job deleted unfinished keeps them waiting instead (forget_job)
    query = (
        select(JobDependency.job_id)
        .join(JobRow, JobRow.id == JobDependency.job_id)
        .where(
            JobDependency.after_job_id == job.id,
            JobRow.status.not_in(FINISHED_JOB_STATUSES),
        )
        .order_by(JobDependency.job_id)
    )
    return list(s.scalars(query))


def after_of(s: Session, job_id: str) -> list[str]:
    """The jobs `job_id` waits for (or waited for), in id order."""
    return afters_of(s, [job_id]).get(job_id, [])


def afters_of(s: Session, job_ids: Sequence[str]) -> dict[str, list[str]]:
    """after_of each of these jobs (jobs that wait for none left out)."""
    after: dict[str, list[str]] = {}
    for ids in in_chunks(job_ids):
        query = select(JobDependency.job_id, JobDependency.after_job_id).where(
            JobDependency.job_id.in_(ids)
        )
        for job_id, other in s.execute(query):
            after.setdefault(job_id, []).append(other)
    return {job_id: sorted(others) for job_id, others in after.items()}


def waiting_for_jobs_reason(s: Session, job: JobRow) -> str | None:
    """Why a queued job does not start yet, naming each job it still waits for; None if it
    does not wait."""
    if not job.waits_for_jobs or job.status != JobStatus.QUEUED:
        return None
    reasons = []
    for other_id in after_of(s, job.id):
        other = s.get(JobRow, other_id)
        if other is None:
            reasons.append(f"Job {other_id} was deleted before it completed; cancel this one.")
        elif other.status in (JobStatus.FAILED, JobStatus.CANCELED):
            reasons.append(f"Job {other_id} {other.status}; requeue it or cancel this one.")
        elif other.status != JobStatus.COMPLETED:
            percent = round(100 * _done_fraction(s, other_id))
            reasons.append(f"Waits for job {other_id} ({other.status}, {percent} %).")
    return " ".join(reasons) or None


def _still_waits(s: Session, job_id: str) -> bool:
    """Whether some job that `job_id` waits for has not completed (or no longer exists)."""
    after = after_of(s, job_id)
    if not after:
        return False
    completed = s.scalar(
        select(func.count())
        .select_from(JobRow)
        .where(JobRow.id.in_(after), JobRow.status == JobStatus.COMPLETED)
    )
    return completed != len(after)


def _done_fraction(s: Session, job_id: str) -> float:
    total, completed = s.execute(
        select(
            func.count(),
            func.count().filter(TaskRow.status == TaskStatus.COMPLETED),
        ).where(TaskRow.job_id == job_id)
    ).one()
    return completed / total if total else 0.0


# Built once: the update intake asks it after every batch that completes tasks.
_FREED_JOB = (
    select(JobDependency.job_id)
    .join(JobRow, JobRow.id == JobDependency.job_id)
    .where(
        JobDependency.after_job_id.in_(bindparam("job_ids", expanding=True)),
        JobRow.status == JobStatus.QUEUED,
        JobRow.waits_for_jobs.is_(False),
    )
    .limit(1)
)


def frees_jobs(s: Session, job_ids: set[str]) -> bool:
    """Whether a job that waited for one of these may now start (to wake waiting syncs)."""
    found = s.connection().execute(_FREED_JOB, {"job_ids": list(job_ids)})
    return found.first() is not None


def _announce_after_commit(s: Session, job_id: str) -> None:
    """Publish a "job" event for `job_id` once this transaction commits (its reason changed)."""
    events: EventBus | None = s.info.get(EVENTS_KEY)
    if events is None:
        return
    changed: set[str] | None = s.info.get(CHANGED_KEY)
    if changed is None:
        changed = s.info[CHANGED_KEY] = set()

        def publish(session: Session) -> None:
            for changed_id in sorted(session.info.pop(CHANGED_KEY, set())):
                events.publish("job", id=changed_id)

        event.listen(s, "after_commit", publish, once=True)
        event.listen(s, "after_rollback", lambda session: session.info.pop(CHANGED_KEY, None))
    changed.add(job_id)


# Built once: a busy Manager's syncs read it for each job they lease from.
_AWAITED_ARTIFACTS = (
    select(JobArtifact.name, JobArtifact.sha256)
    .join(JobDependency, JobDependency.after_job_id == JobArtifact.job_id)
    .where(JobDependency.job_id == bindparam("job_id"))
    .order_by(JobArtifact.created, JobArtifact.id)
)


def awaited_artifacts(s: Session, job_id: str) -> dict[str, str]:
    """The artifacts of the jobs `job_id` waits for: name in the job's folder -> blob. Of two
    with one name, the one stored last."""
    rows = s.execute(_AWAITED_ARTIFACTS, {"job_id": job_id}).all()
    return {name: sha256 for name, sha256 in rows}


def video_frames(s: Session, job_id: str, wanted: set[int]) -> dict[str, str]:
    """What an ffmpeg task encodes, as its files (`frames/<frame>/<file name>` -> blob): the
    rendered frames of its job (a render job's preview video) and of the jobs it waits for
    (an `ffmpeg` job); `wanted` empty: every frame. A frame of its own job comes first, then
    the one stored last."""
    awaited = select(JobDependency.after_job_id).where(JobDependency.job_id == job_id)
    rows = s.execute(
        select(OutputRow.frame, OutputRow.filename, OutputRow.sha256)
        .where(or_(OutputRow.job_id == job_id, OutputRow.job_id.in_(awaited)))
        .order_by(case((OutputRow.job_id == job_id, 1), else_=0), OutputRow.created)
    ).all()
    latest = {r.frame: r for r in rows if not wanted or r.frame in wanted}
    return {preview_frame_path(r.frame, r.filename): r.sha256 for _, r in sorted(latest.items())}
