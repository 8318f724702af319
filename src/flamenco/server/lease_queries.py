"""The statements of a Manager's sync (leases.py), built once at import.

A busy site syncs many times a second and each sync runs a dozen statements: building a
statement and working out its cache key cost SQLAlchemy more CPU than SQLite spent running it
(up to ten times as much), so each is a module constant with bound parameters, keyed once.
"""

from __future__ import annotations

from sqlalchemy import Integer, bindparam, func, or_, select

from flamenco.core.states import RUNNABLE_TASK_STATUSES, JobStatus, TaskStatus
from flamenco.server.models import JobRow, JobSite, TaskRow

LEASABLE_JOB_STATUSES = (JobStatus.QUEUED, JobStatus.ACTIVE)
HELD_TASK_STATUSES = (TaskStatus.LEASED, TaskStatus.ACTIVE)

_TIME = TaskRow.lease_expires.type

# What leasing reads of a candidate task: plain rows, no ORM object each (its cost was a
# third of a busy farm's syncs); they are leased in one statement (`transitions.lease_tasks`).
CANDIDATE_COLUMNS = (
    TaskRow.id,
    TaskRow.job_id,
    TaskRow.index,
    TaskRow.status,
    TaskRow.type,
    TaskRow.name,
    TaskRow.frames,
    TaskRow.command,
    TaskRow.requirements,
    TaskRow.depends_on,
)

# A page of a job's tasks in one status, in index order (ix_tasks_job_status_index): a page
# costs its own rows, not the job's. Rows other syncs are leasing are skipped on PostgreSQL.
CANDIDATES = (
    select(*CANDIDATE_COLUMNS)
    .where(
        TaskRow.job_id == bindparam("job_id"),
        TaskRow.status == bindparam("in_status"),  # not "status": that key reads as a write
        TaskRow.index > bindparam("after"),
    )
    .order_by(TaskRow.index)
    .limit(bindparam("size", type_=Integer))
    .with_for_update(skip_locked=True)
)

# Jobs without a site list run anywhere; the others only on the sites they name.
_SITES = select(JobSite.site).where(JobSite.job_id == JobRow.id)
_ALLOWED_ON_SITE = or_(~_SITES.exists(), _SITES.where(JobSite.site == bindparam("site")).exists())

# Jobs with runnable tasks that may run on a site, in the order they lease.
LEASABLE_JOBS = (
    select(JobRow.id)
    .where(
        JobRow.status.in_(LEASABLE_JOB_STATUSES),
        JobRow.waits_for_jobs.is_(False),  # submit --after: kept by the status door
        _ALLOWED_ON_SITE,
        select(TaskRow.id)
        .where(TaskRow.job_id == JobRow.id, TaskRow.status.in_(RUNNABLE_TASK_STATUSES))
        .exists(),
    )
    .order_by(JobRow.priority.desc(), JobRow.created, JobRow.id)
)

# What a Manager holds, as the Server sees it: its tasks in leasable jobs, read through
# ix_tasks_status_job (looking a thousand held ids up one by one cost twice as much), with
# whether each lease is due for renewal, worked out by the database: decoding a thousand
# timestamps cost more than the query.
LEASED_TO_MANAGER = (
    select(
        TaskRow.id,
        TaskRow.job_id,
        or_(
            TaskRow.lease_expires.is_(None),
            TaskRow.lease_expires <= bindparam("due_before", type_=_TIME),
        ).label("due"),
    )
    .join(JobRow, JobRow.id == TaskRow.job_id)
    .where(
        TaskRow.status.in_(HELD_TASK_STATUSES),
        TaskRow.manager_id == bindparam("manager_id"),
        JobRow.status.in_(LEASABLE_JOB_STATUSES),
    )
)

# The tasks a Manager holds (when its token is revoked, they go back to the queue).
HELD_BY = select(TaskRow).where(
    TaskRow.status.in_(HELD_TASK_STATUSES), TaskRow.manager_id == bindparam("manager_id")
)
# Held tasks whose lease ran out (their Manager stayed silent), and when the next one does.
EXPIRED = select(TaskRow).where(
    TaskRow.status.in_(HELD_TASK_STATUSES), TaskRow.lease_expires < bindparam("now", type_=_TIME)
)
NEXT_EXPIRY = select(func.min(TaskRow.lease_expires)).where(TaskRow.status.in_(HELD_TASK_STATUSES))
