"""Chunks sized by time on the Server: when tasks of a `--chunk auto` job complete, its
trailing queued tasks are re-planned (`flamenco.core.chunking`) in the same transaction as
the completions, through the status door (`transitions.replan_queued_tasks`).

Only the *trailing* queued tasks are re-planned: those after every task of the job that has
left the queue. Tasks lease in index order, so that is where the job's future is; a task
that went back to the queue in the middle (an expired lease) keeps its frames, and leased,
running and finished tasks are never touched. Nothing here runs on the lease path: a lease
costs what it cost before.

Per-frame times come from the runs of the job's latest completed tasks (`core/runs.py`: from
the Worker's `active` report to its `completed` one), each divided by its frames.
"""

from __future__ import annotations

import logging
import threading
from contextlib import AbstractContextManager, nullcontext

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from flamenco.core.chunking import RECENT_SAMPLES, DoneTask, rechunk
from flamenco.core.compiler import JobCompileError
from flamenco.core.job_types.blender_render import (
    JOB_TYPE as BLENDER_RENDER,
)
from flamenco.core.job_types.blender_render import (
    RENDER_TASK_TYPE,
    read_chunk_auto,
    rechunked_render,
)
from flamenco.core.runs import task_runs
from flamenco.core.states import TaskStatus
from flamenco.server.models import AppliedUpdate, JobRow, TaskRow
from flamenco.server.transitions import replan_queued_tasks

log = logging.getLogger("flamenco.server.rechunk")

# SQLite (pysqlite) reads outside any transaction until a transaction's first write, so a
# lease could read a queued task, a re-plan change its frames and commit, and the lease then
# hand out the frames it read while the row holds others: frames marked done unrendered (seen
# in bench/chunking.py). On SQLite, leases and the update batches that may re-plan therefore
# take this lock around their transactions; SQLite writes one transaction at a time anyway.
# PostgreSQL needs none: both lock the rows they take (FOR UPDATE SKIP LOCKED).
_PLAN_LOCK = threading.Lock()


def plan_guard(sessions: sessionmaker) -> AbstractContextManager[object]:
    """Hold around a lease's or an update batch's transaction (see `_PLAN_LOCK`)."""
    bind = sessions.kw.get("bind")
    sqlite = bind is not None and bind.dialect.name == "sqlite"
    return _PLAN_LOCK if sqlite else nullcontext()


def rechunk_completed_jobs(s: Session, entered: dict[str, set[TaskStatus]]) -> None:
    """Re-plan each auto-chunked job of which a task just completed (job -> statuses its
    tasks entered in this batch)."""
    for job_id in sorted(entered):
        if TaskStatus.COMPLETED in entered[job_id]:
            rechunk_job(s, job_id)


def rechunk_job(s: Session, job_id: str) -> bool:
    """Re-plan the job's trailing queued tasks by time; whether they changed."""
    job = s.get(JobRow, job_id)
    if job is None or job.type != BLENDER_RENDER.name:  # only its render tasks re-plan
        return False
    try:
        target = read_chunk_auto(job.settings)
    except JobCompileError:  # checked at submit; a job from before the setting is not auto
        return False
    if target is None:
        return False
    tasks = _trailing_queued(s, job_id)
    plan = rechunk([task.frames for task in tasks], _done_tasks(s, job_id), target)
    if plan is None:
        return False
    replan_queued_tasks(s, tasks, [rechunked_render(tasks[0].command, chunk) for chunk in plan])
    log.info(
        "job %s: %d queued tasks re-planned as %d of about %g s",
        job_id,
        len(tasks),
        len(plan),
        target,
        extra={"job": job_id},
    )
    return True


def _trailing_queued(s: Session, job_id: str) -> list[TaskRow]:
    """The queued render tasks after every other task of the job, in order, locked (on
    PostgreSQL; one that a lease holds right now counts as not queued)."""
    locked = list(
        s.scalars(
            select(TaskRow)
            .where(
                TaskRow.job_id == job_id,
                TaskRow.status == TaskStatus.QUEUED,
                TaskRow.type == RENDER_TASK_TYPE,
            )
            .order_by(TaskRow.index)
            .with_for_update(skip_locked=True)
        )
    )
    mine = {task.id for task in locked}
    others = s.scalars(
        select(TaskRow.index).where(TaskRow.job_id == job_id, TaskRow.id.not_in(mine))
    )
    last_other = max(others, default=-1)
    return [task for task in locked if task.index > last_other]


def _done_tasks(s: Session, job_id: str) -> list[DoneTask]:
    """The job's latest completed render tasks with their runs' seconds, oldest first."""
    recent = s.execute(
        select(TaskRow.id, TaskRow.frames)
        .where(
            TaskRow.job_id == job_id,
            TaskRow.status == TaskStatus.COMPLETED,
            TaskRow.type == RENDER_TASK_TYPE,
        )
        .order_by(TaskRow.updated.desc())
        .limit(RECENT_SAMPLES)
    ).all()
    frames = {task_id: tuple(task_frames) for task_id, task_frames in recent}
    history = s.execute(
        select(
            AppliedUpdate.task_id,
            AppliedUpdate.status,
            AppliedUpdate.worker,
            AppliedUpdate.received,
        )
        .where(
            AppliedUpdate.task_id.in_(frames),
            AppliedUpdate.outcome == "applied",
            AppliedUpdate.status.is_not(None),
        )
        .order_by(AppliedUpdate.received)
    ).all()
    runs = [
        run
        for run in task_runs([tuple(row) for row in history])  # type: ignore[misc]
        if run.outcome == TaskStatus.COMPLETED and run.end is not None
    ]
    runs.sort(key=lambda run: run.end or run.start)
    return [
        DoneTask(frames[run.task_id], run.seconds(run.end or run.start), run.worker) for run in runs
    ]
