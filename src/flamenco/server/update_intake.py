"""Taking in the Managers' task updates: each applied once, in one transaction a batch,
checked against the task's status (`transitions.py`), logs kept; then the jobs they
touched brought to the status their tasks imply, and waiting syncs woken."""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Dialect, String, bindparam, cast, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from flamenco import wire
from flamenco.core.faults import Fault
from flamenco.core.states import (
    RUNNABLE_TASK_STATUSES,
    TERMINAL_TASK_STATUSES,
    InvalidTransition,
    JobStatus,
    TaskStatus,
)
from flamenco.db import utcnow
from flamenco.errors import Unavailable
from flamenco.server import transitions
from flamenco.server.doorbell import Doorbell
from flamenco.server.driver_rows import DriverRows
from flamenco.server.events import EventBus
from flamenco.server.hangs import record_error
from flamenco.server.job_dependencies import frees_jobs
from flamenco.server.job_runs import record_job_starts
from flamenco.server.models import AppliedUpdate, JobRow, ManagerRow, TaskLogChunk, TaskRow
from flamenco.server.rechunk import plan_guard, rechunk_completed_jobs
from flamenco.server.records import dependencies_done
from flamenco.server.transitions import (
    REPORTED_COLUMNS,
    ReportedTask,
    TasksMoved,
    report_task,
    write_reported_tasks,
)

log = logging.getLogger("flamenco.server.update_intake")

# A task entering one of these may be leased again, or its job failed (tasks taken away).
RINGING_STATUSES = {TaskStatus.QUEUED, TaskStatus.SOFT_FAILED, TaskStatus.FAILED}
LOG_TAIL_CHARS = 4000
BATCH_ATTEMPTS = 3


# The statements every batch runs, built once with bound parameters: building and keying
# them cost SQLAlchemy more CPU than running them; run through the session's connection,
# as plain rows (no ORM loading).
_SEEN_UPDATES = select(AppliedUpdate.update_id).where(
    AppliedUpdate.update_id.in_(bindparam("update_ids", expanding=True))
)
_REPORTED_TASKS = (
    select(*REPORTED_COLUMNS)
    .where(REPORTED_COLUMNS[0].in_(bindparam("task_ids", expanding=True)))
    .order_by(REPORTED_COLUMNS[0])
    .with_for_update()
)

# Runnable tasks of some jobs that wait for other tasks: job and depends_on, as
# `dependencies_done` reads them (asked after every batch that completes tasks).
_WAITING_TASKS = select(TaskRow.job_id, TaskRow.depends_on).where(
    TaskRow.job_id.in_(bindparam("job_ids", expanding=True)),
    TaskRow.status.in_(RUNNABLE_TASK_STATUSES),
    cast(TaskRow.depends_on, String) != "[]",
)


@functools.lru_cache(maxsize=8)
def _record_insert(dialect: Dialect) -> DriverRows:
    """The INSERT of a batch's records of its updates (`AppliedUpdate`), every column given."""
    keys = ("update_id", "task_id", "outcome", "status", "worker", "manager_id", "received")
    return DriverRows(insert(AppliedUpdate.__table__), dialect, keys)


@dataclass
class AppliedBatch:
    """What a batch of updates changed, to announce once it is committed."""

    tasks: dict[tuple[str, str], bool] = field(default_factory=dict)  # (job, task) -> logged
    entered: dict[str, set[TaskStatus]] = field(default_factory=dict)  # job -> task statuses

    def touched(self, task: ReportedTask, logged: bool) -> None:
        key = (task.job_id, task.id)
        self.tasks[key] = self.tasks.get(key, False) or logged

    def moved(self, task: ReportedTask) -> None:
        self.entered.setdefault(task.job_id, set()).add(TaskStatus(task.status))

    @property
    def jobs(self) -> set[str]:
        return {job_id for job_id, _ in self.tasks}

    @property
    def statuses(self) -> set[TaskStatus]:
        return set().union(*self.entered.values())


class UpdateIntake:
    """The update side of LeaseService (server/leases.py), which provides these attributes."""

    sessions: sessionmaker
    events: EventBus
    bell: Doorbell
    max_failed_tasks: int
    max_task_failures: int

    def apply_updates(self, manager: ManagerRow, updates: list[wire.TaskUpdate]) -> list[str]:
        """Apply each update once, all in one transaction; every id received is acknowledged,
        applied or not. A replay (an id seen before, or twice in the batch) changes nothing."""
        for _ in range(BATCH_ATTEMPTS):
            try:
                batch = self._apply_batch(manager.id, updates)
                break
            except IntegrityError:
                # The same update arrived twice at once (a retry racing the first try) and the
                # other transaction recorded it first: the next attempt skips it.
                log.info("update batch of manager %s raced a replay; applying again", manager.id)
            except TasksMoved:
                # SQLite: another transaction changed one of the tasks after this one read it.
                log.info(
                    "update batch of manager %s raced a task change; applying again", manager.id
                )
        else:
            raise Unavailable("The updates could not be applied; send them again.")
        self._announce(batch)
        return [u.update_id for u in updates]

    def _apply_batch(self, manager_id: int, updates: list[wire.TaskUpdate]) -> AppliedBatch:
        batch = AppliedBatch()
        with plan_guard(self.sessions), self.sessions.begin() as s:
            fresh = self._fresh(s, updates)
            tasks = self._lock_tasks(s, {u.task_id for u in fresh})
            # The record of each update, written in one statement after the loop (before the
            # re-planning, which reads the runs they make), and the tasks written once
            # (before anything reads the tasks table): no ORM object per update or task.
            records = []
            starts: dict[str, datetime] = {}  # job -> its first run reported active here
            for update in fresh:
                task = tasks.get(update.task_id)
                before = task.status if task is not None else None
                outcome = self._apply(s, manager_id, task, update)
                records.append(
                    {
                        "update_id": update.update_id,
                        "task_id": update.task_id,
                        "outcome": outcome,
                        "status": update.status,
                        "worker": update.worker,
                        "manager_id": manager_id,
                        "received": utcnow(),
                    }
                )
                if task is None:
                    continue
                if outcome == "applied" and update.status == TaskStatus.ACTIVE:
                    starts.setdefault(task.job_id, records[-1]["received"])
                batch.touched(task, bool(update.log or update.error))
                if outcome == "applied":
                    record_error(s, task, update)
                    if update.fault == Fault.FILE and task.status == TaskStatus.FAILED:
                        # A file that cannot render fails its job at once, not at the end of
                        # the batch: the job's other failures in it (a file without a camera
                        # fails within milliseconds on every Worker) find their tasks
                        # canceled, and blocklist nobody.
                        self._fail_job_now(s, tasks, task.job_id)
                if task.status != before:
                    batch.moved(task)
            write_reported_tasks(s, tasks.values())
            if records:
                connection = s.connection()
                _record_insert(connection.dialect).execute(connection, records)
            record_job_starts(s, starts)
            rechunk_completed_jobs(s, batch.entered)  # --chunk auto: sized by time
            self._refresh_jobs(s, batch.entered)
        return batch

    def _refresh_jobs(self, s: Session, entered: dict[str, set[TaskStatus]]) -> None:
        """Bring each job whose tasks moved to the status they imply, once per batch. Tasks that
        only started cannot change a running job's status: that job is not counted again."""
        for job_id in sorted(entered):
            job = s.get(JobRow, job_id)
            if job is None or (
                job.status == JobStatus.ACTIVE and entered[job_id] <= {TaskStatus.ACTIVE}
            ):
                continue
            transitions.refresh_job_status(s, job_id, self.max_failed_tasks)

    @staticmethod
    def _fresh(s: Session, updates: list[wire.TaskUpdate]) -> list[wire.TaskUpdate]:
        """The updates never applied before, each id once, in their order."""
        ids = list({u.update_id for u in updates})
        seen = set(s.connection().execute(_SEEN_UPDATES, {"update_ids": ids}).scalars())
        fresh = []
        for update in updates:
            if update.update_id not in seen:
                seen.add(update.update_id)
                fresh.append(update)
        return fresh

    @staticmethod
    def _lock_tasks(s: Session, task_ids: set[str]) -> dict[str, ReportedTask]:
        """The tasks, locked on PostgreSQL (in one order: no deadlock) until the batch ends, so
        that two Managers reporting the same task cannot both win. Plain rows of the columns
        an update changes: not the frames, command and requirements, whose JSON would be
        decoded for every update of a busy farm and never used."""
        if not task_ids:
            return {}
        values = {"task_ids": list(task_ids)}
        rows = s.connection().execute(_REPORTED_TASKS, values).all()  # one fetchall
        return {row[0]: ReportedTask(*row) for row in rows}

    def _fail_job_now(self, s: Session, tasks: dict[str, ReportedTask], job_id: str) -> None:
        """Fail the job of a task failed by its file's fault, in the middle of a batch: what
        the batch changed so far is written first (the job's status is counted from the
        table), and its tasks read again after, so that later updates find them canceled."""
        write_reported_tasks(s, tasks.values())
        transitions.refresh_job_status(s, job_id, max_failed_tasks=0)
        s.flush()
        tasks.update(self._lock_tasks(s, {t.id for t in tasks.values() if t.job_id == job_id}))

    def _announce(self, batch: AppliedBatch) -> None:
        """After the commit: tell the Dashboard, and wake waiting syncs if there is work."""
        for (job_id, task_id), logged in batch.tasks.items():
            self.events.publish_task(job_id, task_id, logged)
        statuses = batch.statuses
        if statuses & RINGING_STATUSES or (
            TaskStatus.COMPLETED in statuses
            and self.bell.listened
            and self._dependents_ready(batch.jobs)
        ):
            self.bell.ring()

    def _dependents_ready(self, job_ids: set[str]) -> bool:
        """Whether a runnable task of these jobs that waited for others may now run, or a job
        that waited for one of them (submit --after) may now start."""
        with self.sessions() as s:
            if frees_jobs(s, job_ids):
                return True
            waiting = s.connection().execute(_WAITING_TASKS, {"job_ids": list(job_ids)})
            return any(dependencies_done(s, task) for task in waiting.all())

    def _apply(
        self, s: Session, manager_id: int, task: ReportedTask | None, update: wire.TaskUpdate
    ) -> str:
        if task is None:
            return "unknown-task"
        ctx = {"job": task.job_id, "task": task.id, "worker": update.worker}
        self._append_log(s, task, update)
        if task.manager_id != manager_id or task.status in TERMINAL_TASK_STATUSES:
            log.info(
                "task %s: update %s ignored, task is %s elsewhere",
                task.id,
                update.update_id,
                task.status,
                extra=ctx,
            )
            return "ignored"
        if update.worker:
            task.worker = update.worker
        if update.blender_pid is not None:
            task.blender_pid = update.blender_pid
        if update.activity is not None:
            task.activity = update.activity
        if update.progress is not None:
            task.progress = update.progress
        if update.status is not None and update.status != task.status:
            new = self._outcome_status(task, update)
            old = task.status
            try:
                report_task(task, new)
            except InvalidTransition as exc:
                log.warning("task %s: %s", task.id, exc, extra=ctx)
                return "invalid-transition"
            log.info("task %s: %s -> %s", task.id, old, new, extra=ctx)
        return "applied"

    def _outcome_status(self, task: ReportedTask, update: wire.TaskUpdate) -> TaskStatus:
        """A failure is retried (soft-failed) until the task has failed too often; one that is
        the file's fault is not retried (flamenco.core.faults)."""
        if update.status != TaskStatus.FAILED:
            return TaskStatus(update.status)
        task.failure_count += 1
        if task.failure_count < self.max_task_failures and update.fault != Fault.FILE:
            return TaskStatus.SOFT_FAILED
        return TaskStatus.FAILED

    @staticmethod
    def _append_log(s: Session, task: ReportedTask, update: wire.TaskUpdate) -> None:
        lines = list(update.log)
        if update.error:
            lines.append(f"ERROR: {update.error}")
        if not lines:
            return
        text = "\n".join(lines) + "\n"
        s.add(TaskLogChunk(task_id=task.id, text=text))
        task.log_tail = (task.log_tail + text)[-LOG_TAIL_CHARS:]
