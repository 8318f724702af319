"""A job's runs (which Worker rendered which task, from when until when), read from its
applied status reports (`flamenco.core.runs`): of all its tasks (the timeline), of a page of
them, or of its latest tasks, which a big job's timeline shows; and when jobs started."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from flamenco.core.runs import (
    end_stopped_runs,
    last_failed_task_ids,
    mark_retried_failures,
    open_task_ids,
    task_runs,
)
from flamenco.core.states import TaskStatus
from flamenco.db import in_chunks
from flamenco.server.models import AppliedUpdate, JobRow, TaskRow


def latest_task_ids(s: Session, job_id: str, count: int) -> list[str]:
    """The job's last `count` tasks, in task order, among those that have left the queue:
    tasks are leased in that order, so theirs are the latest runs (a retry of an early task
    is not among them). Each status is read backwards from the (job, status, index) index,
    `count` at most: never every task of a big job."""
    found: list[Any] = []
    for status in TaskStatus:
        if status != TaskStatus.QUEUED:
            found += s.execute(
                select(TaskRow.index, TaskRow.id)
                .where(TaskRow.job_id == job_id, TaskRow.status == status)
                .order_by(TaskRow.index.desc())
                .limit(count)
            ).all()
    return [row.id for row in sorted(found, reverse=True)[:count]]


def record_job_starts(s: Session, starts: dict[str, datetime]) -> None:
    """Note when jobs started (`jobs.started`: the time of their first applied `active`
    report), for those not started before; a job's answer then reads one column instead of
    the reports of every job."""
    for job_id, when in sorted(starts.items()):
        s.execute(
            update(JobRow)
            .where(JobRow.id == job_id, JobRow.started.is_(None))
            # `updated` as it was: a run starting is no change of the job by anyone.
            .values(started=when, updated=JobRow.updated)
        )


def runs_of_tasks(s: Session, *where: Any) -> list[dict[str, Any]]:
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


def _task_states(s: Session, task_ids: set[str]) -> dict[str, Any]:
    """Task id -> its status and last change, for a few tasks."""
    states: dict[str, Any] = {}
    for ids in in_chunks(sorted(task_ids)):
        query = select(TaskRow.id, TaskRow.status, TaskRow.updated).where(TaskRow.id.in_(ids))
        states.update((row.id, row._mapping) for row in s.execute(query))
    return states
