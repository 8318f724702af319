"""What keeps a job from hanging silently: the last error its tasks failed with, clearing its
blocklist, and taking back the tasks a site holds but none of its Workers may run.

Functions over an open session; the job and lease services call them inside their own
transactions.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from flamenco import wire
from flamenco.core.states import TaskStatus
from flamenco.db import in_chunks, utcnow
from flamenco.server.models import AppliedUpdate, BlocklistClear, JobError, TaskRow
from flamenco.server.transitions import ReportedTask, release_task

log = logging.getLogger("flamenco.server.hangs")

HANDED_BACK = (TaskStatus.LEASED, TaskStatus.ACTIVE)  # what a site may hand back


def record_error(s: Session, task: TaskRow | ReportedTask, update: wire.TaskUpdate) -> None:
    """Keep the error of an applied update as its job's latest."""
    if not update.error:
        return
    row = s.get(JobError, task.job_id)
    if row is None:
        row = JobError(job_id=task.job_id)
        s.add(row)
    row.task_id, row.worker, row.error = task.id, update.worker, update.error
    row.fault, row.at = update.fault, utcnow()


def last_errors(s: Session, job_ids: Sequence[str]) -> dict[str, str]:
    """The last error kept of each of these jobs (jobs without one left out)."""
    errors: dict[str, str] = {}
    for ids in in_chunks(job_ids):
        query = select(JobError.job_id, JobError.error).where(JobError.job_id.in_(ids))
        errors.update({job_id: error for job_id, error in s.execute(query)})
    return errors


def forget_error(s: Session, job_id: str) -> None:
    """A requeued job starts afresh: its old error would only mislead."""
    s.execute(delete(JobError).where(JobError.job_id == job_id))


def clear_blocklist(s: Session, job_id: str, worker: str | None = None) -> None:
    """From now on, failures before this do not count towards the job's blocklist, for
    `worker` or (None) for every Worker (flamenco.server.records.blocked_workers)."""
    s.add(BlocklistClear(job_id=job_id, worker=worker, cleared=utcnow()))


def take_back(s: Session, manager_id: int, task_ids: list[str]) -> list[tuple[str, str]]:
    """Queue again the tasks this Manager holds but none of its Workers may run; each is
    kept in the task's history as queued by that Manager. Returns (job, task) of those."""
    if not task_ids:
        return []
    rows = s.scalars(
        select(TaskRow)
        .where(
            TaskRow.id.in_(task_ids),
            TaskRow.manager_id == manager_id,
            TaskRow.status.in_(HANDED_BACK),
        )
        .order_by(TaskRow.id)
        .with_for_update()
    ).all()
    for task in rows:
        log.info(
            "task %s handed back by manager %s: none of its Workers may run it",
            task.id,
            manager_id,
            extra={"job": task.job_id, "task": task.id},
        )
        release_task(task, TaskStatus.QUEUED, forget_worker=True)
        s.add(
            AppliedUpdate(
                update_id=wire.new_update_id(),
                task_id=task.id,
                outcome="applied",
                status=TaskStatus.QUEUED,
                manager_id=manager_id,
            )
        )
    return [(task.job_id, task.id) for task in rows]
