"""Handing tasks to Managers, taking their updates, and taking back what they let go."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from anyio import to_thread
from sqlalchemy import ColumnElement, String, cast, func, or_, select
from sqlalchemy import update as sql_update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, load_only, sessionmaker

from flamenco import wire
from flamenco.core.compiler import preview_frame_path
from flamenco.core.faults import Fault
from flamenco.core.matching import Capabilities, Requirements, unmet
from flamenco.core.states import (
    RUNNABLE_TASK_STATUSES,
    TERMINAL_TASK_STATUSES,
    InvalidTransition,
    JobStatus,
    TaskStatus,
)
from flamenco.db import utcnow
from flamenco.errors import NotFound, Unavailable
from flamenco.server import transitions
from flamenco.server.doorbell import Doorbell
from flamenco.server.events import EventBus
from flamenco.server.hangs import record_error, take_back
from flamenco.server.job_dependencies import frees_jobs
from flamenco.server.models import (
    AppliedUpdate,
    JobRow,
    JobSite,
    ManagerRow,
    OutputRow,
    TaskLogChunk,
    TaskRow,
)
from flamenco.server.records import blocked_workers, failed_by
from flamenco.server.transitions import lease_task, release_task, report_task

log = logging.getLogger("flamenco.server.leases")

LEASABLE_JOB_STATUSES = (JobStatus.QUEUED, JobStatus.ACTIVE)
HELD_TASK_STATUSES = (TaskStatus.LEASED, TaskStatus.ACTIVE)
# A task entering one of these may be leased again, or its job failed (tasks taken away).
RINGING_STATUSES = {TaskStatus.QUEUED, TaskStatus.SOFT_FAILED, TaskStatus.FAILED}
LOG_TAIL_CHARS = 4000
SCAN_LIMIT = 500  # candidate tasks looked at per lease request
PAGE_SLACK = 4  # candidates read beyond those wanted, for the ones that do not fit
BATCH_ATTEMPTS = 3
EXPIRY_MARGIN_S = 0.05
SYNC_MANAGER_COLUMNS = (ManagerRow.id, ManagerRow.name, ManagerRow.worker_states)  # not workers
HELD_COLUMNS = (
    TaskRow.id,
    TaskRow.job_id,
    TaskRow.manager_id,
    TaskRow.status,
    TaskRow.progress,
    TaskRow.activity,
    TaskRow.lease_expires,
)
RENEW_AFTER = 0.25  # a lease is extended once this fraction of the lease timeout has passed

Gone = Callable[[], Awaitable[bool]]


@dataclass
class Synced:
    reply: wire.ManagerSyncReply
    next_expiry: datetime | None  # when a lease expires next, if the sync may wait


class Renewal(NamedTuple):
    revoked: list[str]  # held tasks the Manager must drop
    moved: list[tuple[str, str]]  # (job, task) whose progress moved
    jobs: set[str]  # the jobs of the held tasks


@dataclass
class AppliedBatch:
    """What a batch of updates changed, to announce once it is committed."""

    tasks: dict[tuple[str, str], bool] = field(default_factory=dict)  # (job, task) -> logged
    entered: dict[str, set[TaskStatus]] = field(default_factory=dict)  # job -> task statuses

    def touched(self, task: TaskRow, logged: bool) -> None:
        key = (task.job_id, task.id)
        self.tasks[key] = self.tasks.get(key, False) or logged

    def moved(self, task: TaskRow) -> None:
        self.entered.setdefault(task.job_id, set()).add(TaskStatus(task.status))

    @property
    def jobs(self) -> set[str]:
        return {job_id for job_id, _ in self.tasks}

    @property
    def statuses(self) -> set[TaskStatus]:
        return set().union(*self.entered.values())


def _news(reply: wire.ManagerSyncReply) -> tuple[Any, ...]:
    """What a reply tells a Manager besides leases and revocations."""
    return reply.blocklist, reply.worker_states


def _held_by(row: Any, manager_id: int) -> bool:
    return row.manager_id == manager_id and row.status in HELD_TASK_STATUSES


def _moved(row: Any, progress: wire.Progress) -> bool:
    return (row.progress, row.activity) != (progress.progress, progress.activity)


class LeaseService:
    def __init__(
        self,
        sessions: sessionmaker,
        lease_timeout_s: float = 120.0,
        max_task_failures: int = 3,
        sync_interval_s: float = 1.0,
        manager_offline_s: float = 30.0,
        blocklist_threshold: int = 3,
        events: EventBus | None = None,
        max_failed_tasks: int = 0,
        bell: Doorbell | None = None,
    ) -> None:
        self.bell = bell or Doorbell()
        self._told: dict[int, tuple[Any, ...]] = {}  # manager id -> _news of its last reply
        self.max_failed_tasks = max_failed_tasks
        self.events = events or EventBus()
        self.blocklist_threshold = blocklist_threshold
        self.manager_offline = timedelta(seconds=manager_offline_s)
        self.sessions = sessions
        self.lease_timeout = timedelta(seconds=lease_timeout_s)
        self.max_task_failures = max_task_failures
        self.sync_interval_s = sync_interval_s

    # ---- the Manager's sync call -----------------------------------------------------------

    def sync(self, manager: ManagerRow, req: wire.ManagerSync) -> wire.ManagerSyncReply:
        """One sync at once: record what the Manager reports, renew its leases, lease what it
        wants."""
        reply = self._sync(manager.id, req, record=True).reply
        self._told[manager.id] = _news(reply)
        return reply

    async def sync_waiting(
        self, manager: ManagerRow, req: wire.ManagerSync, gone: Gone | None = None
    ) -> wire.ManagerSyncReply:
        """A sync that, when the Manager wants tasks and there are none for it, is held up to
        `req.wait_s` until there are, or until the Manager has something else to learn.

        Only a coroutine waits (on the Doorbell); each look runs in a worker thread. `gone`
        says whether the Manager hung up: nothing is leased to a request nobody reads.
        """
        loop = asyncio.get_running_loop()
        end = loop.time() + self._hold_s(req)
        with self.bell.listening():
            ticket = self.bell.ticket()
            synced = await to_thread.run_sync(self._sync, manager.id, req, True)
            while not self._worth_answering(manager.id, req, synced.reply) and (
                await self._await_change(ticket, end, synced.next_expiry, gone)
            ):
                ticket = self.bell.ticket()
                synced = await to_thread.run_sync(self._sync, manager.id, req, False)
        self._told[manager.id] = _news(synced.reply)
        return synced.reply

    def _hold_s(self, req: wire.ManagerSync) -> float:
        """How long a sync may be held: leases and the Manager's online status stay fresh."""
        limits = (self.lease_timeout.total_seconds() / 3, self.manager_offline.total_seconds() / 2)
        return min(req.wait_s, *limits)

    def _worth_answering(
        self, manager_id: int, req: wire.ManagerSync, reply: wire.ManagerSyncReply
    ) -> bool:
        if not req.want or req.wait_s <= 0 or reply.leases or reply.revoked or req.handed_back:
            return True  # the Manager forgets handed-back tasks once it hears they were taken
        return _news(reply) != self._told.get(manager_id)

    async def _await_change(
        self, ticket: int, end: float, next_expiry: datetime | None, gone: Gone | None
    ) -> bool:
        """Wait for a ring or for the next lease to expire; False when it is time to answer."""
        loop = asyncio.get_running_loop()
        until = end
        if next_expiry is not None:
            expires_in = (next_expiry - utcnow()).total_seconds() + EXPIRY_MARGIN_S
            until = min(end, loop.time() + expires_in)
        rung = await self.bell.wait(ticket, until - loop.time())
        if not rung and loop.time() >= end:
            return False
        return gone is None or not await gone()

    def _sync(self, manager_id: int, req: wire.ManagerSync, record: bool) -> Synced:
        """Look at what there is for the Manager; with `record`, also store what it reports."""
        with self.sessions.begin() as s:
            expired = self.expire_leases(s)
            row, reported = self._manager(s, manager_id, req, record)
            progress = req.progress if record else []
            renewal = self._renew(s, manager_id, req.held, progress)
            workers = [w for w in reported if w.status in wire.WORKING_STATUSES]
            leases = self._lease(s, row, req.want, workers)
            # After leasing: what this site hands back is not leased to it again at once.
            handed = take_back(s, manager_id, req.handed_back) if record else []
            jobs = {lease.job_id for lease in leases} | renewal.jobs
            blocked = blocked_workers(s, jobs, self.blocklist_threshold, manager_id)
            states = dict(row.worker_states)
            waits = req.want and req.wait_s and not leases and not renewal.revoked
            next_expiry = self._next_expiry(s) if waits else None
        if expired or handed:
            self.bell.ring()  # tasks to lease again: other waiting Managers may take them
        if record:
            self.events.publish("managers")
        leased = [(lease.job_id, lease.task_id) for lease in leases]
        for job_id, task_id in renewal.moved + leased + handed:
            self._publish_task(job_id, task_id)
        reply = wire.ManagerSyncReply(
            leases=leases,
            revoked=renewal.revoked,
            next_sync_s=self.sync_interval_s,
            blocklist={job: sorted(names) for job, names in blocked.items()},
            worker_states=states,
        )
        return Synced(reply, next_expiry)

    @staticmethod
    def _manager(
        s: Session, manager_id: int, req: wire.ManagerSync, record: bool
    ) -> tuple[ManagerRow, list[wire.WorkerSummary]]:
        """The Manager's row and its Workers: with `record`, those of the request, stored
        (the stored list is not read); else the latest stored, which an ordinary sync may
        have sent while this one was held."""
        stores = record and req.workers is not None
        columns = SYNC_MANAGER_COLUMNS if stores else (*SYNC_MANAGER_COLUMNS, ManagerRow.workers)
        row = s.get(ManagerRow, manager_id, options=[load_only(*columns)])
        assert row is not None
        if stores:
            assert req.workers is not None
            for problem in req.dropped_workers:  # the sync goes on with the Manager's others
                log.warning("Manager %s: a Worker's row was left out: %s", row.name, problem)
            row.workers = [w.model_dump(mode="json") for w in req.workers]
            return row, req.workers
        return row, wire.worker_summaries(row.workers)[0]

    def set_worker_state(self, manager_name: str, worker: str, state: str) -> None:
        """What operators want of a Worker; its Manager passes it on at its next sync."""
        with self.sessions.begin() as s:
            row = s.scalar(select(ManagerRow).where(ManagerRow.name == manager_name))
            if row is None:
                raise NotFound(f"There is no Manager named '{manager_name}'.")
            if not any(w.get("name") == worker for w in row.workers):
                raise NotFound(f"Manager '{manager_name}' has no Worker named '{worker}'.")
            row.worker_states = {**row.worker_states, worker: state}
        log.info(
            "worker %s of %s: wanted %s", worker, manager_name, state, extra={"worker": worker}
        )
        self.events.publish("managers")
        self.bell.ring()

    def managers(self) -> list[wire.ManagerInfo]:
        """Every Manager with its Workers, as last reported, and whether it is online."""
        cutoff = utcnow() - self.manager_offline
        with self.sessions() as s:
            rows = s.scalars(select(ManagerRow).order_by(ManagerRow.name)).all()
            return [
                wire.ManagerInfo(
                    name=m.name,
                    last_seen=m.last_seen,
                    address=m.address,
                    status="revoked"
                    if m.revoked
                    else "online"
                    if m.last_seen and m.last_seen > cutoff
                    else "offline",
                    workers=wire.worker_summaries(m.workers)[0],
                )
                for m in rows
            ]

    def expire_leases(self, s: Session) -> int:
        """Tasks whose Manager stayed silent past the lease timeout go back to the queue."""
        expired = s.scalars(
            select(TaskRow).where(
                TaskRow.status.in_(HELD_TASK_STATUSES), TaskRow.lease_expires < utcnow()
            )
        ).all()
        for task in expired:
            log.warning(
                "task %s: lease of manager %s expired",
                task.id,
                task.manager_id,
                extra={"job": task.job_id, "task": task.id},
            )
            release_task(task, TaskStatus.QUEUED, forget_worker=True)
        return len(expired)

    @staticmethod
    def _next_expiry(s: Session) -> datetime | None:
        """When the next lease expires, if nobody renews it."""
        return s.scalar(
            select(func.min(TaskRow.lease_expires)).where(TaskRow.status.in_(HELD_TASK_STATUSES))
        )

    def _renew(
        self, s: Session, manager_id: int, held: list[str], progress: list[wire.Progress]
    ) -> Renewal:
        """Extend the leases the Manager still holds and store their volatile progress.

        Only the columns needed are read, and each change is one statement for all tasks. A
        busy Manager syncs several times a second: a lease is written again only once a
        quarter of its timeout has passed, not at every sync.
        """
        ids = set(held) | {p.task_id for p in progress}
        if not ids:
            return Renewal([], [], set())
        rows = {
            r.id: r
            for r in s.execute(
                select(*HELD_COLUMNS, JobRow.status.label("job_status"))
                .join(JobRow, JobRow.id == TaskRow.job_id)
                .where(TaskRow.id.in_(ids))
            )
        }
        mine = {i for i, r in rows.items() if _held_by(r, manager_id)}
        renewed = {i for i in held if i in mine and rows[i].job_status in LEASABLE_JOB_STATUSES}
        expires = utcnow() + self.lease_timeout
        due_before = expires - self.lease_timeout * RENEW_AFTER
        due = [i for i in renewed if (rows[i].lease_expires or due_before) <= due_before]
        if due:
            s.execute(
                sql_update(TaskRow).where(TaskRow.id.in_(due)).values(lease_expires=expires),
                execution_options={"synchronize_session": False},
            )
        moved = [p for p in progress if p.task_id in mine and _moved(rows[p.task_id], p)]
        if moved:
            s.execute(
                sql_update(TaskRow),
                [{"id": p.task_id, "progress": p.progress, "activity": p.activity} for p in moved],
            )
        return Renewal(
            revoked=[i for i in held if i not in renewed],
            moved=[(rows[p.task_id].job_id, p.task_id) for p in moved],
            jobs={rows[i].job_id for i in held if i in rows},
        )

    def _publish_task(self, job_id: str, task_id: str, logged: bool = False) -> None:
        self.events.publish("task", job_id=job_id, id=task_id)
        self.events.publish("job", id=job_id)
        if logged:
            self.events.publish("log", job_id=job_id, task_id=task_id)

    def _lease(
        self, s: Session, manager: ManagerRow, want: int, workers: list[wire.WorkerSummary]
    ) -> list[wire.Lease]:
        """Up to `want` runnable tasks that this Manager's Workers may run: by job priority,
        then age, then task order. Candidates are read a few at a time, job by job: reading
        a whole queue's rows (JSON columns and all) cost tens of milliseconds a sync."""
        if want <= 0 or not workers:
            return []
        capable = {w.name: w.capabilities() for w in workers}
        expires = utcnow() + self.lease_timeout
        granted: list[tuple[TaskRow, JobRow]] = []
        scanned = 0
        for job_id in self._leasable_jobs(s, manager.name):
            blocked = blocked_workers(s, {job_id}, self.blocklist_threshold, manager.id)
            allowed = [cap for name, cap in capable.items() if name not in blocked.get(job_id, ())]
            if not allowed:
                continue  # every Worker of this Manager failed this job too often
            job = s.get(JobRow, job_id)
            assert job is not None
            before = len(granted)
            for task in self._candidates(s, job_id, want - len(granted)):
                scanned += 1
                if self._may_lease(s, task, allowed):
                    lease_task(task, manager.id, expires)
                    granted.append((task, job))
                if len(granted) >= want or scanned >= SCAN_LIMIT:
                    break
            if len(granted) > before and job.status == JobStatus.QUEUED:
                transitions.refresh_job_status(s, job_id, self.max_failed_tasks)  # now active
            if len(granted) >= want or scanned >= SCAN_LIMIT:
                break
        failed = failed_by(s, [task.id for task, _ in granted], manager.id)
        return [self._lease_of(s, task, job, failed.get(task.id, [])) for task, job in granted]

    def _leasable_jobs(self, s: Session, site: str) -> list[str]:
        """Jobs with runnable tasks that may run on this site, in the order they lease."""
        runnable = (
            select(TaskRow.id)
            .where(TaskRow.job_id == JobRow.id, TaskRow.status.in_(RUNNABLE_TASK_STATUSES))
            .exists()
        )
        return list(
            s.scalars(
                select(JobRow.id)
                .where(
                    JobRow.status.in_(LEASABLE_JOB_STATUSES),
                    JobRow.waits_for_jobs.is_(False),  # submit --after: kept by the status door
                    self._allowed_on(site),
                    runnable,
                )
                .order_by(JobRow.priority.desc(), JobRow.created, JobRow.id)
            )
        )

    @staticmethod
    def _candidates(s: Session, job_id: str, wanted: int) -> Iterator[TaskRow]:
        """The job's runnable tasks in order, read a page at a time (rows other syncs are
        leasing right now are skipped on PostgreSQL). Each status is read in index order
        (ix_tasks_job_status_index): a page costs its own rows, not the job's."""
        after, size = -1, wanted + PAGE_SLACK
        while True:
            found = [
                task
                for status in RUNNABLE_TASK_STATUSES
                for task in s.scalars(
                    select(TaskRow)
                    .where(
                        TaskRow.job_id == job_id, TaskRow.status == status, TaskRow.index > after
                    )
                    .order_by(TaskRow.index)
                    .limit(size)
                    .with_for_update(skip_locked=True)
                )
            ]
            page = sorted(found, key=lambda task: task.index)[:size]
            yield from page
            if len(page) < size:
                return
            after, size = page[-1].index, min(size * 4, SCAN_LIMIT)

    def _may_lease(self, s: Session, task: TaskRow, allowed: list[Capabilities]) -> bool:
        """Whether the task may run now, on one of the Workers allowed its job."""
        if task.depends_on and not self._dependencies_done(s, task):
            return False
        needs = Requirements.from_dict(task.requirements)
        return any(unmet(needs, cap) is None for cap in allowed)  # else another site may

    def _lease_of(self, s: Session, task: TaskRow, job: JobRow, failed_by: list[str]) -> wire.Lease:
        assert task.lease_expires is not None
        return wire.Lease(
            task_id=task.id,
            job_id=job.id,
            job_name=job.name,
            job_priority=job.priority,
            type=task.type,
            name=task.name,
            frames=task.frames,
            command=task.command,
            files=self._files_for(s, task, job),
            lease_expires=task.lease_expires,
            requirements=task.requirements,
            failed_by=failed_by,
        )

    @staticmethod
    def _allowed_on(site: str) -> ColumnElement[bool]:
        """Jobs without a site list run anywhere; the others only on the sites they name."""
        sites = select(JobSite.site).where(JobSite.job_id == JobRow.id)
        return or_(~sites.exists(), sites.where(JobSite.site == site).exists())

    @staticmethod
    def _files_for(s: Session, task: TaskRow, job: JobRow) -> dict[str, str]:
        """What the Worker fetches: the job's files, or for a preview video its rendered frames
        (the same blobs, fetched through the Manager's cache like any job file)."""
        if task.type != "ffmpeg":
            return job.files
        wanted = set(task.frames)
        rows = s.execute(
            select(OutputRow.frame, OutputRow.filename, OutputRow.sha256)
            .where(OutputRow.job_id == job.id)
            .order_by(OutputRow.frame)
        ).all()
        return {
            preview_frame_path(r.frame, r.filename): r.sha256 for r in rows if r.frame in wanted
        }

    @staticmethod
    def _dependencies_done(s: Session, task: TaskRow) -> bool:
        statuses = s.scalars(
            select(TaskRow.status).where(
                TaskRow.job_id == task.job_id, TaskRow.index.in_(task.depends_on)
            )
        ).all()
        return all(status == TaskStatus.COMPLETED for status in statuses)

    # ---- updates ---------------------------------------------------------------------------

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
        else:
            raise Unavailable("The updates could not be applied; send them again.")
        self._announce(batch)
        return [u.update_id for u in updates]

    def _apply_batch(self, manager_id: int, updates: list[wire.TaskUpdate]) -> AppliedBatch:
        batch = AppliedBatch()
        with self.sessions.begin() as s:
            fresh = self._fresh(s, updates)
            tasks = self._lock_tasks(s, {u.task_id for u in fresh})
            for update in fresh:
                task = tasks.get(update.task_id)
                before = task.status if task is not None else None
                outcome = self._apply(s, manager_id, task, update)
                s.add(
                    AppliedUpdate(
                        update_id=update.update_id,
                        task_id=update.task_id,
                        outcome=outcome,
                        status=update.status,
                        worker=update.worker,
                        manager_id=manager_id,
                    )
                )
                if task is None:
                    continue
                batch.touched(task, bool(update.log or update.error))
                if outcome == "applied":
                    record_error(s, task, update)
                    if update.fault == Fault.FILE and task.status == TaskStatus.FAILED:
                        # A file that cannot render fails its job at once, not at the end of
                        # the batch: the job's other failures in it (a file without a camera
                        # fails within milliseconds on every Worker) find their tasks
                        # canceled, and blocklist nobody.
                        transitions.refresh_job_status(s, task.job_id, max_failed_tasks=0)
                if task.status != before:
                    batch.moved(task)
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
        ids = {u.update_id for u in updates}
        seen = set(
            s.scalars(select(AppliedUpdate.update_id).where(AppliedUpdate.update_id.in_(ids)))
        )
        fresh = []
        for update in updates:
            if update.update_id not in seen:
                seen.add(update.update_id)
                fresh.append(update)
        return fresh

    @staticmethod
    def _lock_tasks(s: Session, task_ids: set[str]) -> dict[str, TaskRow]:
        """The tasks, locked on PostgreSQL (in one order: no deadlock) until the batch ends, so
        that two Managers reporting the same task cannot both win."""
        if not task_ids:
            return {}
        rows = s.scalars(
            select(TaskRow).where(TaskRow.id.in_(task_ids)).order_by(TaskRow.id).with_for_update()
        )
        return {task.id: task for task in rows}

    def _announce(self, batch: AppliedBatch) -> None:
        """After the commit: tell the Dashboard, and wake waiting syncs if there is work."""
        for (job_id, task_id), logged in batch.tasks.items():
            self._publish_task(job_id, task_id, logged)
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
            waiting = s.scalars(
                select(TaskRow).where(
                    TaskRow.job_id.in_(job_ids),
                    TaskRow.status.in_(RUNNABLE_TASK_STATUSES),
                    cast(TaskRow.depends_on, String) != "[]",
                )
            )
            return any(self._dependencies_done(s, task) for task in waiting)

    def _apply(
        self, s: Session, manager_id: int, task: TaskRow | None, update: wire.TaskUpdate
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

    def _outcome_status(self, task: TaskRow, update: wire.TaskUpdate) -> TaskStatus:
        """A failure is retried (soft-failed) until the task has failed too often; one that is
        the file's fault is not retried (flamenco.core.faults)."""
        if update.status != TaskStatus.FAILED:
            return TaskStatus(update.status)
        task.failure_count += 1
        if task.failure_count < self.max_task_failures and update.fault != Fault.FILE:
            return TaskStatus.SOFT_FAILED
        return TaskStatus.FAILED

    @staticmethod
    def _append_log(s: Session, task: TaskRow, update: wire.TaskUpdate) -> None:
        lines = list(update.log)
        if update.error:
            lines.append(f"ERROR: {update.error}")
        if not lines:
            return
        text = "\n".join(lines) + "\n"
        s.add(TaskLogChunk(task_id=task.id, text=text))
        task.log_tail = (task.log_tail + text)[-LOG_TAIL_CHARS:]
