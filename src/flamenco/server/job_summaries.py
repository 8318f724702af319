"""A job as the API shows it (`wire.Job`): its row with its tasks' counts, progress, frames,
blocklist, errors and why it waits, for one job or for every job of a list at once.

A list reads each of these for all of its jobs in one statement (per `db.IN_CHUNK` jobs), not
one per job: a farm that has kept months of jobs lists thousands, and eight statements a job
made its job list, which the Dashboard's first page reads, take seconds. Only a job that can
wait for a Worker (queued or active, with tasks left) costs statements of its own: the first
task of each waiting status, whose requirements say who may run it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from sqlalchemy import bindparam, func, select
from sqlalchemy.orm import Session

from flamenco import wire
from flamenco.core.matching import Capabilities, Requirements, job_waiting_reason
from flamenco.core.states import RUNNABLE_TASK_STATUSES, JobStatus, TaskStatus
from flamenco.db import in_chunks, utcnow
from flamenco.server.hangs import last_errors
from flamenco.server.job_dependencies import afters_of, waiting_for_jobs_reason
from flamenco.server.models import JobRow, OutputRow, TaskRow
from flamenco.server.records import blocked_workers, online_workers
from flamenco.server.transitions import PROGRESSING, status_counts_of


def frames_done_of(s: Session, job_ids: Sequence[str]) -> dict[str, int]:
    """How many rendered frames each job has (jobs without any left out)."""
    done: dict[str, int] = {}
    for ids in in_chunks(job_ids):
        query = (
            select(OutputRow.job_id, func.count())
            .where(OutputRow.job_id.in_(ids))
            .group_by(OutputRow.job_id)
        )
        done.update({job_id: count for job_id, count in s.execute(query)})
    return done


def count_frames(s: Session, job_id: str) -> int:
    """How many rendered frames the job has (its `frames_done`, a frame page's `total`)."""
    return frames_done_of(s, [job_id]).get(job_id, 0)


def _running_progress_of(s: Session, job_ids: Sequence[str]) -> dict[str, float]:
    """The summed progress of each job's tasks that can have any (PROGRESSING): the few that
    run, not every task of a job of 100,000."""
    progress: dict[str, float] = {}
    for ids in in_chunks(job_ids):
        query = (
            select(TaskRow.job_id, func.sum(TaskRow.progress))
            .where(TaskRow.job_id.in_(ids), TaskRow.status.in_(PROGRESSING))
            .group_by(TaskRow.job_id)
        )
        progress.update({job_id: total or 0.0 for job_id, total in s.execute(query)})
    return progress


# Built once: building a statement costs more than running this one (a list of many jobs).
_FIRST_TASK = (
    select(TaskRow.index, TaskRow.requirements)
    .where(TaskRow.job_id == bindparam("job_id"), TaskRow.status == bindparam("waiting"))
    .order_by(TaskRow.index)
    .limit(1)
)


class JobSummaries:
    """wire.Job for one job or many, within one session."""

    def __init__(self, s: Session, manager_offline: timedelta, blocklist_threshold: int) -> None:
        self.s = s
        self.manager_offline = manager_offline
        self.blocklist_threshold = blocklist_threshold
        self._workers: dict[tuple[str, ...], dict[str, Capabilities]] = {}

    def of(self, jobs: Sequence[JobRow]) -> list[wire.Job]:
        s, ids = self.s, [job.id for job in jobs]
        counts = status_counts_of(s, ids)
        running = _running_progress_of(s, ids)
        frames_done = frames_done_of(s, ids)
        blocked = blocked_workers(s, set(ids), self.blocklist_threshold)
        after = afters_of(s, ids)
        errors = last_errors(s, ids)
        answers = []
        for job in jobs:
            job_counts = {TaskStatus(st): n for st, n in counts.get(job.id, {}).items()}
            job_blocked = blocked.get(job.id, set())
            total = sum(job_counts.values())
            completed = job_counts.get(TaskStatus.COMPLETED, 0)
            # Tasks weigh the same: chunks are of one size but for the last one.
            done = completed + running.get(job.id, 0.0)
            answers.append(
                wire.Job(
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
                    frames_done=frames_done.get(job.id, 0),
                    progress=round(min(done / (total or 1), 1.0), 4),
                    output_dir=job.output_dir,
                    sites=job.sites,
                    waiting_reason=waiting_for_jobs_reason(s, job)
                    or self._waiting_reason(job, job_counts, job_blocked),
                    after=after.get(job.id, []),
                    blocklist=sorted(job_blocked),
                    last_error=errors.get(job.id),
                    started=job.started,
                )
            )
        return answers

    def _online(self, sites: list[str]) -> dict[str, Capabilities]:
        """The working Workers of these sites (all: none named), read once per list."""
        key = tuple(sorted(sites))
        if key not in self._workers:
            since = utcnow() - self.manager_offline
            self._workers[key] = online_workers(self.s, since, list(key))
        return self._workers[key]

    def _waiting_reason(
        self, job: JobRow, counts: dict[TaskStatus, int], blocked: set[str]
    ) -> str | None:
        """Why a job's remaining tasks find no Worker, when that is so. A leased task counts
        as remaining: its site may hold it with no Worker there allowed to run it."""
        if job.status not in (JobStatus.QUEUED, JobStatus.ACTIVE):
            return None
        waiting = [st for st in (*RUNNABLE_TASK_STATUSES, TaskStatus.LEASED) if st in counts]
        if not waiting:
            return None
        # The first of each status by the (job, status, index) index, then the first of
        # those: one IN over the statuses would sort every remaining task of the job. A
        # status counted a moment ago may have no task left (a lease or an update between
        # the two reads), hence first() and not one().
        firsts = [
            row
            for status in waiting
            if (row := self.s.execute(_FIRST_TASK, {"job_id": job.id, "waiting": status}).first())
            is not None
        ]
        if not firsts:
            return None
        first = min(firsts, key=lambda row: row.index)
        workers = self._online(job.sites)
        return job_waiting_reason(Requirements.from_dict(first.requirements), workers, blocked)
