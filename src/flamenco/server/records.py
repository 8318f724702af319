"""Queries shared by the job and lease services: what Managers reported, and whether the tasks
a task waits for are done."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Row, Select, bindparam, func, or_, select
from sqlalchemy.orm import Session

from flamenco import wire
from flamenco.core.matching import Capabilities
from flamenco.core.states import TaskStatus
from flamenco.server.models import AppliedUpdate, BlocklistClear, ManagerRow, TaskRow


def _blocked_query(per_manager: bool) -> Select[tuple[str, str | None]]:
    cleared = (
        select(func.max(BlocklistClear.cleared))
        .where(
            BlocklistClear.job_id == TaskRow.job_id,
            or_(BlocklistClear.worker.is_(None), BlocklistClear.worker == AppliedUpdate.worker),
        )
        .correlate(TaskRow, AppliedUpdate)
        .scalar_subquery()
    )
    query = (
        select(TaskRow.job_id, AppliedUpdate.worker)
        .join(TaskRow, TaskRow.id == AppliedUpdate.task_id)
        .where(
            TaskRow.job_id.in_(bindparam("job_ids", expanding=True)),
            AppliedUpdate.status == TaskStatus.FAILED,
            AppliedUpdate.outcome == "applied",
            AppliedUpdate.worker.is_not(None),
            or_(cleared.is_(None), AppliedUpdate.received > cleared),
        )
        .group_by(TaskRow.job_id, AppliedUpdate.worker)
        .having(func.count() >= bindparam("threshold"))
    )
    if per_manager:
        query = query.where(AppliedUpdate.manager_id == bindparam("manager_id"))
    return query


# Built once, for every sync: building and keying this statement cost a hundred times more
# than running it (SQLAlchemy keys a statement object once).
_BLOCKED = {per_manager: _blocked_query(per_manager) for per_manager in (False, True)}


def blocked_workers(
    s: Session, job_ids: set[str], threshold: int, manager_id: int | None = None
) -> dict[str, set[str]]:
    """Workers that failed a job's tasks `threshold` times or more: they get no more of it.

    Failures received before the job's blocklist was last cleared for that Worker (or for
    all, see BlocklistClear) do not count: one query, the clearing a correlated subquery.
    """
    if not job_ids:
        return {}
    values = {"job_ids": list(job_ids), "threshold": threshold, "manager_id": manager_id}
    blocked: dict[str, set[str]] = {}
    for job_id, worker in s.execute(_BLOCKED[manager_id is not None], values):
        blocked.setdefault(job_id, set()).add(worker)
    return blocked


# The Workers of a Manager that failed tasks before, built once like _BLOCKED.
_FAILED_BY = (
    select(AppliedUpdate.task_id, AppliedUpdate.worker)
    .where(
        AppliedUpdate.task_id.in_(bindparam("task_ids", expanding=True)),
        AppliedUpdate.manager_id == bindparam("manager_id"),
        AppliedUpdate.status == TaskStatus.FAILED,
        AppliedUpdate.worker.is_not(None),
    )
    .distinct()
)


def failed_by(s: Session, task_ids: list[str], manager_id: int) -> dict[str, list[str]]:
    """The Workers of a Manager that failed each of these tasks before (one query for all)."""
    if not task_ids:
        return {}
    rows = s.execute(_FAILED_BY, {"task_ids": task_ids, "manager_id": manager_id})
    workers: dict[str, list[str]] = {}
    for task_id, worker in rows:
        workers.setdefault(task_id, []).append(worker)
    return {task_id: sorted(names) for task_id, names in workers.items()}


def manager_names(s: Session) -> dict[int, str]:
    return {row.id: row.name for row in s.execute(select(ManagerRow.id, ManagerRow.name))}


def online_workers(
    s: Session, since: datetime, sites: list[str] | None = None
) -> dict[str, Capabilities]:
    """What the working Workers of every Manager heard from since `since` can do, by name;
    with `sites`, of those Managers only."""
    capabilities = {}
    query = select(ManagerRow.workers).where(ManagerRow.last_seen > since)
    if sites:
        query = query.where(ManagerRow.name.in_(sites))
    for workers in s.scalars(query):
        for summary in wire.worker_summaries(workers)[0]:
            if summary.status in wire.WORKING_STATUSES:
                capabilities[summary.name] = summary.capabilities()
    return capabilities


def dependencies_done(s: Session, task: TaskRow | Row[Any]) -> bool:
    """Whether every task this one waits for has completed (`task`: its ORM object, or a row
    with its job_id and depends_on)."""
    statuses = s.scalars(
        select(TaskRow.status).where(
            TaskRow.job_id == task.job_id, TaskRow.index.in_(task.depends_on)
        )
    ).all()
    return all(status == TaskStatus.COMPLETED for status in statuses)
