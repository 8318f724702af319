"""The one door for status changes: every write of a task's or a job's status in the Server.

Each change is checked against the tables of `flamenco.core.states` before anything of it is
written; a change they forbid raises `InvalidTransition` and leaves the row as it was. The
callers turn that into their answer (an update recorded as "invalid-transition", a 409 for an
action). Besides the status, each door writes what entering that status means for the task's
other columns (who holds it, until when, its progress), so those rules live here once too.

No other module of `flamenco.server` assigns `.status` (tests/server/test_transitions.py
checks the source).
"""

from __future__ import annotations

import functools
import logging
import secrets
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime
from operator import attrgetter
from typing import Any, Protocol

from sqlalchemy import Dialect, Update, bindparam, func, select
from sqlalchemy.orm import Session

from flamenco.core.job_types.blender_render import RenderChunk
from flamenco.core.states import (
    FINISHED_JOB_STATUSES,
    InvalidTransition,
    JobStatus,
    TaskStatus,
    check_job_transition,
    check_task_transition,
    job_status_from_tasks,
)
from flamenco.db import in_chunks, utcnow
from flamenco.server.driver_rows import DriverRows
from flamenco.server.job_dependencies import job_status_changed
from flamenco.server.models import JobRow, TaskRow
from flamenco.server.notifications import queue_job_end

log = logging.getLogger("flamenco.server.transitions")

# A Worker's report of these ends its Manager's hold on the task: it may be leased anew.
_LETS_GO = (TaskStatus.SOFT_FAILED, TaskStatus.FAILED, TaskStatus.QUEUED)
_UNFINISHED = (TaskStatus.QUEUED, TaskStatus.LEASED, TaskStatus.ACTIVE, TaskStatus.SOFT_FAILED)
# The only statuses whose tasks have partial progress: a task that leaves them gets 1.0
# (completed) or 0.0 (anything else) from report_task and release_task below.
PROGRESSING = (TaskStatus.LEASED, TaskStatus.ACTIVE)


class MovableTask(Protocol):
    """What the one-task doors touch: a TaskRow, or a ReportedTask read as a plain row."""

    status: str
    manager_id: int | None
    lease_expires: datetime | None
    progress: float


@dataclass(slots=True, eq=False)
class ReportedTask:
    """The columns of a task that a Worker's report may change, read as a plain row instead of
    an ORM object: the intake of updates (`update_intake.py`) handles thousands a second, and
    an object, its change tracking and its flush cost more than the rest of an update.
    `report_task` moves it as it moves a TaskRow; `write_reported_tasks` stores what changed."""

    id: str
    job_id: str
    status: str
    manager_id: int | None
    lease_expires: datetime | None
    worker: str | None
    blender_pid: int | None
    activity: str
    progress: float
    failure_count: int
    log_tail: str
    stored: tuple[Any, ...] = field(init=False, repr=False)  # as the database holds them

    def __post_init__(self) -> None:
        self.stored = _reported_values(self)


_REPORTED_NAMES = tuple(f.name for f in fields(ReportedTask) if f.init)
_reported_values = attrgetter(*_REPORTED_NAMES)
# The columns ReportedTask is read from, in the order of its fields.
REPORTED_COLUMNS = tuple(TaskRow.__table__.c[name] for name in _REPORTED_NAMES)
_STATUS_AT = _REPORTED_NAMES.index("status")


class TasksMoved(Exception):
    """A task's status changed since it was read, by another transaction: the caller's
    transaction is rolled back and tried again (on PostgreSQL the rows are locked; on SQLite
    a read takes no lock until the transaction's first write)."""


def write_reported_tasks(s: Session, tasks: Iterable[ReportedTask]) -> None:
    """Store what changed of the tasks since they were read or last written: their statuses
    were checked by `report_task` as they moved. One executemany UPDATE per set of changed
    columns (a busy batch has two: started and completed tasks), each row only where its
    status is still the one read; a row that moved meanwhile raises `TasksMoved`."""
    by_changed: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for task in tasks:
        now = _reported_values(task)
        changed = tuple(
            name
            for name, value, stored in zip(_REPORTED_NAMES, now, task.stored, strict=True)
            if value != stored
        )
        if not changed:
            continue
        row = {name: getattr(task, name) for name in changed}
        row["read_id"], row["read_status"] = task.id, task.stored[_STATUS_AT]
        by_changed.setdefault(changed, []).append(row)
        task.stored = now
    connection = s.connection()
    for changed, rows in by_changed.items():
        statement = _reported_update(connection.dialect, changed)
        updated = statement.bind("updated", utcnow())  # converted once for all the rows
        for row in rows:
            row["updated"] = updated
        if statement.execute(connection, rows) != len(rows):
            raise TasksMoved("a reported task's status changed since it was read")


@functools.lru_cache(maxsize=64)
def _reported_update(dialect: Dialect, changed: tuple[str, ...]) -> DriverRows:
    """The UPDATE of `write_reported_tasks` for one set of changed columns, `updated` with
    them (the model's onupdate, which the driver would not compute)."""
    table = TaskRow.__table__
    statement = table.update().where(
        table.c.id == bindparam("read_id"), table.c.status == bindparam("read_status")
    )
    keys = (*changed, "updated", "read_id", "read_status")
    return DriverRows(statement, dialect, keys, bound=("updated",))


def _move_task(task: MovableTask, new: TaskStatus) -> None:
    """Check, then write, the task's new status: a refused change writes nothing."""
    check_task_transition(TaskStatus(task.status), new)
    task.status = new


def lease_tasks(
    s: Session, tasks: Iterable[tuple[str, str]], manager_id: int, expires: datetime
) -> set[str]:
    """Hand runnable tasks, given as (task id, the status it was read in), to a Manager until
    `expires`: in bulk, without an ORM object each (a busy farm's syncs lease all the time)."""
    return _move_tasks(
        s, tasks, TaskStatus.LEASED, {"manager_id": manager_id, "lease_expires": expires}
    )


def _move_tasks(
    s: Session, tasks: Iterable[tuple[str, str]], new: TaskStatus, values: dict[str, Any]
) -> set[str]:
    """Move the tasks (id, the status it was read in) to `new`, writing `values` with it.

    Every pair is checked against the table before anything is written: one refused change
    raises `InvalidTransition` and writes nothing. Then one UPDATE per status read, each only
    where the task is still in it: a task whose status moved since it was read is left as it
    is and missing from the ids returned, which are those moved.
    """
    by_old: dict[TaskStatus, list[str]] = {}
    for task_id, old in tasks:
        check_task_transition(TaskStatus(old), new)
        by_old.setdefault(TaskStatus(old), []).append(task_id)
    moved: set[str] = set()
    statement = _move_statement(tuple(values))
    params = {f"new_{name}": value for name, value in values.items()}
    connection = s.connection()
    for old, ids in by_old.items():
        found = connection.execute(statement, {**params, "ids": ids, "old": old, "new": new})
        moved.update(found.scalars())
        for task_id in ids:  # a copy this session holds would still show the old columns
            loaded = s.identity_map.get(Session.identity_key(TaskRow, task_id))
            if loaded is not None:
                s.expire(loaded, ["status", *values])
    return moved


@functools.lru_cache(maxsize=8)
def _move_statement(names: tuple[str, ...]) -> Update:
    """The UPDATE of `_move_tasks` writing the columns `names` with the status, built once
    with bound parameters (building it, and coercing each id of its IN, cost a busy sync's
    leasing more than running it); run through the connection, it loads no ORM object."""
    table = TaskRow.__table__
    return (
        table.update()
        # `status || ''`: compared as is, SQLite reads the status index (every queued
        # task: 12 ms for 50 of 60,000) instead of the ids' primary key (0.2 ms).
        .where(
            table.c.id.in_(bindparam("ids", expanding=True)),
            table.c.status.concat("") == bindparam("old"),
        )
        .values(status=bindparam("new"), **{name: bindparam(f"new_{name}") for name in names})
        .returning(table.c.id)
    )


def report_task(task: MovableTask, new: TaskStatus) -> None:
    """Enter the status a Worker reported (through its Manager) for the task it runs."""
    _move_task(task, new)
    if new == TaskStatus.COMPLETED:
        task.progress, task.lease_expires = 1.0, None
    elif new in _LETS_GO:
        task.manager_id, task.lease_expires, task.progress = None, None, 0.0


def release_task(task: TaskRow, new: TaskStatus, forget_worker: bool = False) -> None:
    """Put the task in `new`, taking it away from whichever Manager held it: a job action,
    a job that failed, a lease that expired or a task a site handed back. With
    `forget_worker`, the Worker that last had it is forgotten too (it never ran it to the end)."""
    _move_task(task, new)
    task.manager_id, task.lease_expires = None, None
    if new != TaskStatus.COMPLETED:
        task.progress = 0.0
    if forget_worker:
        task.worker = None


def release_leases(tasks: Iterable[TaskRow], why: str) -> list[tuple[str, str]]:
    """Leased tasks back to the queue, for any site to lease (their Worker forgotten): their
    Manager stayed silent past the lease timeout, or its token was revoked. Their (job id,
    task id), for LeaseService.announce_released once committed."""
    released = []
    for task in tasks:
        log.warning(
            "task %s: lease of manager %s %s",
            task.id,
            task.manager_id,
            why,
            extra={"job": task.job_id, "task": task.id},
        )
        release_task(task, TaskStatus.QUEUED, forget_worker=True)
        released.append((task.job_id, task.id))
    return released


def set_job_status(job: JobRow, new: JobStatus) -> None:
    """Check, then write, the job's new status: a refused change writes nothing. A job that
    ends (completed, failed, canceled) has its notifications queued in the same transaction,
    and the jobs waiting for it (submit --after) are re-evaluated there too."""
    old = JobStatus(job.status)
    check_job_transition(old, new)
    job.status = new
    if new in FINISHED_JOB_STATUSES:
        queue_job_end(job)
    if new != old:
        job_status_changed(job, new)


def status_counts(s: Session, job_id: str) -> dict[str, int]:
    """How many of the job's tasks are in each status (statuses without tasks left out)."""
    return status_counts_of(s, [job_id]).get(job_id, {})


def status_counts_of(s: Session, job_ids: Sequence[str]) -> dict[str, dict[str, int]]:
    """status_counts of each of these jobs (jobs without tasks left out), by the index of
    (job, status) alone."""
    counts: dict[str, dict[str, int]] = {}
    for ids in in_chunks(job_ids):
        query = (
            select(TaskRow.job_id, TaskRow.status, func.count())
            .where(TaskRow.job_id.in_(ids))
            .group_by(TaskRow.job_id, TaskRow.status)
        )
        for job_id, status, count in s.execute(query):
            counts.setdefault(job_id, {})[status] = count
    return counts


def refresh_job_status(s: Session, job_id: str, max_failed_tasks: int = 0) -> None:
    """Move the job's status to what its tasks imply (core rules); a job that fails takes
    its unfinished tasks away from their Managers, canceled."""
    job = s.get(JobRow, job_id)
    if job is None:
        return
    counts = Counter(
        {TaskStatus(status): count for status, count in status_counts(s, job_id).items()}
    )
    new = job_status_from_tasks(JobStatus(job.status), counts, max_failed_tasks)
    if new == job.status:
        return
    log.info("job %s: %s -> %s", job_id, job.status, new, extra={"job": job_id})
    set_job_status(job, new)
    if new == JobStatus.FAILED:
        for task in s.scalars(
            select(TaskRow).where(TaskRow.job_id == job_id, TaskRow.status.in_(_UNFINISHED))
        ):
            release_task(task, TaskStatus.CANCELED)


def replan_queued_tasks(s: Session, tasks: list[TaskRow], chunks: list[RenderChunk]) -> None:
    """Give a job's trailing queued tasks (in index order, none after them) the frames of
    `chunks` instead (`--chunk auto`): the first tasks take new frames, tasks are added after
    them or the ones left over deleted. Only queued tasks are ever re-planned: one that left
    the queue meanwhile refuses it all (`InvalidTransition`), writing nothing."""
    for task in tasks:
        if task.status != TaskStatus.QUEUED:
            raise InvalidTransition("task", TaskStatus(task.status), TaskStatus.QUEUED)
    if not tasks:
        return
    first = tasks[0]
    for offset, chunk in enumerate(chunks):
        if offset < len(tasks):
            task = tasks[offset]
            task.name, task.frames, task.command = chunk.name, list(chunk.frames), chunk.command
            continue
        s.add(
            TaskRow(
                id=secrets.token_hex(8),
                job_id=first.job_id,
                index=first.index + offset,
                name=chunk.name,
                type=first.type,
                status=TaskStatus.QUEUED,
                frames=list(chunk.frames),
                command=chunk.command,
                depends_on=[],
                requirements=first.requirements,
            )
        )
    for task in tasks[len(chunks) :]:
        s.delete(task)
