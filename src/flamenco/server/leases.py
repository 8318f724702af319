"""Handing tasks to Managers: their sync (held while there is nothing for them), leases
renewed, expired and taken back. Their updates are `update_intake.py`, the list of Managers
`manager_views.py`; LeaseService is all three."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from anyio import to_thread
from sqlalchemy import Text, cast, select
from sqlalchemy import update as sql_update
from sqlalchemy.orm import Session, load_only, sessionmaker

from flamenco import wire
from flamenco.aio import Gone
from flamenco.core.matching import Capabilities, Requirements, unmet
from flamenco.core.states import RUNNABLE_TASK_STATUSES, JobStatus
from flamenco.db import utcnow
from flamenco.server import transitions
from flamenco.server.doorbell import Doorbell
from flamenco.server.events import EventBus
from flamenco.server.hangs import take_back
from flamenco.server.job_dependencies import awaited_artifacts, video_frames
from flamenco.server.lease_queries import (
    CANDIDATES,
    EXPIRED,
    HELD_TASK_STATUSES,
    LEASABLE_JOBS,
    LEASED_TO_MANAGER,
    NEXT_EXPIRY,
)
from flamenco.server.manager_views import ManagerViews
from flamenco.server.models import JobRow, ManagerRow, TaskRow
from flamenco.server.rechunk import plan_guard
from flamenco.server.records import blocked_workers, dependencies_done, failed_by
from flamenco.server.rosters import Roster, Rosters
from flamenco.server.transitions import lease_tasks, release_leases
from flamenco.server.update_intake import UpdateIntake

log = logging.getLogger("flamenco.server.leases")

SCAN_LIMIT = 500  # candidate tasks looked at per lease request
PAGE_SLACK = 4  # candidates read beyond those wanted, for the ones that do not fit
EXPIRY_MARGIN_S = 0.05
SYNC_MANAGER_COLUMNS = (ManagerRow.id, ManagerRow.name, ManagerRow.worker_states)  # not workers
PROGRESS_COLUMNS = (
    TaskRow.id,
    TaskRow.job_id,
    TaskRow.manager_id,
    TaskRow.status,
    TaskRow.progress,
    TaskRow.activity,
)
RENEW_AFTER = 0.25  # a lease is extended once this fraction of the lease timeout has passed


@dataclass
class Synced:
    reply: wire.ManagerSyncReply
    next_expiry: datetime | None  # when a lease expires next, if the sync may wait


class Renewal(NamedTuple):
    revoked: list[str]  # held tasks the Manager must drop
    moved: list[tuple[str, str]]  # (job, task) whose progress moved
    jobs: set[str]  # the jobs of the held tasks


def _news(reply: wire.ManagerSyncReply) -> tuple[Any, ...]:
    """What a reply tells a Manager besides leases and revocations."""
    return reply.blocklist, reply.worker_states


def _held_by(row: Any, manager_id: int) -> bool:
    return row.manager_id == manager_id and row.status in HELD_TASK_STATUSES


def _moved(row: Any, progress: wire.Progress) -> bool:
    return (row.progress, row.activity) != (progress.progress, progress.activity)


class LeaseService(UpdateIntake, ManagerViews):
    """Leases tasks to Managers through their sync; takes in their updates (UpdateIntake) and
    keeps the list of Managers and their Workers (ManagerViews)."""

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
        self.rosters = Rosters()  # each Manager's Workers, parsed once, not at every sync
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
        with plan_guard(self.sessions), self.sessions.begin() as s:
            expired = self.expire_leases(s)
            row, roster = self._manager(s, manager_id, req, record)
            progress = req.progress if record else []
            renewal = self._renew(s, manager_id, req.held, progress)
            blocked: dict[str, set[str]] = {}  # job -> Workers kept off it, as read so far
            leases = self._lease(s, row, req.want, roster, blocked)
            # After leasing: what this site hands back is not leased to it again at once.
            handed = take_back(s, manager_id, req.handed_back) if record else []
            jobs = {lease.job_id for lease in leases} | renewal.jobs
            blocklist = self._blocklist(s, manager_id, jobs, blocked)
            states = dict(row.worker_states)
            waits = req.want and req.wait_s and not leases and not renewal.revoked
            next_expiry = self._next_expiry(s) if waits else None
        self.announce_released(expired + handed)
        if record:
            self.events.publish("managers")
        leased = [(lease.job_id, lease.task_id) for lease in leases]
        for job_id, task_id in renewal.moved + leased:
            self.events.publish_task(job_id, task_id)
        reply = wire.ManagerSyncReply(
            leases=leases,
            revoked=renewal.revoked,
            next_sync_s=self.sync_interval_s,
            blocklist=blocklist,
            worker_states=states,
        )
        return Synced(reply, next_expiry)

    def _manager(
        self, s: Session, manager_id: int, req: wire.ManagerSync, record: bool
    ) -> tuple[Any, Roster]:
        """The Manager's row (id, name, worker_states) and its Workers: with `record`, those
        of the request, stored; else the latest stored, which an ordinary sync may have sent
        while this one was held (read as text: decoded only when it changed, see Rosters)."""
        if record and req.workers is not None:
            row = s.get(ManagerRow, manager_id, options=[load_only(*SYNC_MANAGER_COLUMNS)])
            assert row is not None
            for problem in req.dropped_workers:  # the sync goes on with the Manager's others
                log.warning("Manager %s: a Worker's row was left out: %s", row.name, problem)
            roster = self.rosters.reported(manager_id, req.workers)
            row.workers = roster.stored
            return row, roster
        stored = cast(ManagerRow.workers, Text).label("workers")
        found = s.execute(
            select(*SYNC_MANAGER_COLUMNS, stored).where(ManagerRow.id == manager_id)
        ).one()
        return found, self.rosters.stored(manager_id, found.workers)

    def expire_leases(self, s: Session) -> list[tuple[str, str]]:
        """Tasks whose Manager stayed silent past the lease timeout go back to the queue."""
        return release_leases(s.scalars(EXPIRED, {"now": utcnow()}), "expired")

    def manager_changed(self, released: list[tuple[str, str]]) -> None:
        """A Manager's account changed (added, its token replaced or revoked), committed: the
        Managers page hears of it at once, and of the tasks a revocation queued again."""
        self.events.publish("managers")
        self.announce_released(released)

    def announce_released(self, tasks: list[tuple[str, str]]) -> None:
        """Tasks (job id, task id) just queued again, committed: their lease expired, their
        site handed them back or its token was revoked. Waiting Managers look again, and the
        Dashboard hears of each task."""
        if not tasks:
            return
        self.bell.ring()
        for job_id, task_id in tasks:
            self.events.publish_task(job_id, task_id)

    @staticmethod
    def _next_expiry(s: Session) -> datetime | None:
        """When the next lease expires, if nobody renews it."""
        return s.scalar(NEXT_EXPIRY)

    def _renew(
        self, s: Session, manager_id: int, held: list[str], progress: list[wire.Progress]
    ) -> Renewal:
        """Extend the leases the Manager still holds and store their volatile progress.

        A busy Manager holds a thousand tasks and syncs several times a second: what the
        Server has leased to it is read through the status index (looking its held ids up
        one by one cost a sync a millisecond), and a lease is written again only once a
        quarter of its timeout has passed, not at every sync.
        """
        if not held:
            return Renewal([], self._store_progress(s, manager_id, progress), set())
        expires = utcnow() + self.lease_timeout
        due_before = expires - self.lease_timeout * RENEW_AFTER
        values = {"manager_id": manager_id, "due_before": due_before}
        s.flush()  # leases expired just now are not held any more; then plain rows, no ORM
        rows = s.connection().execute(LEASED_TO_MANAGER, values).all()
        leased = {task_id: (job_id, due) for task_id, job_id, due in rows}
        renewed = [i for i in held if i in leased]
        revoked = [i for i in held if i not in leased]
        due = [i for i in renewed if leased[i][1]]
        if due:
            s.execute(
                sql_update(TaskRow).where(TaskRow.id.in_(due)).values(lease_expires=expires),
                execution_options={"synchronize_session": False},
            )
        jobs = {leased[i][0] for i in renewed}
        if revoked:  # their jobs' blocklists are still told, as long as the tasks exist
            jobs.update(s.scalars(select(TaskRow.job_id).where(TaskRow.id.in_(set(revoked)))))
        return Renewal(revoked, self._store_progress(s, manager_id, progress), jobs)

    @staticmethod
    def _store_progress(
        s: Session, manager_id: int, progress: list[wire.Progress]
    ) -> list[tuple[str, str]]:
        """Store the progress of the tasks the Manager holds; (job, task) of those it moved."""
        if not progress:
            return []
        rows = {
            r.id: r
            for r in s.execute(
                select(*PROGRESS_COLUMNS).where(TaskRow.id.in_({p.task_id for p in progress}))
            )
        }
        moved = [
            p
            for p in progress
            if p.task_id in rows
            and _held_by(rows[p.task_id], manager_id)
            and _moved(rows[p.task_id], p)
        ]
        if moved:
            s.execute(
                sql_update(TaskRow),
                [{"id": p.task_id, "progress": p.progress, "activity": p.activity} for p in moved],
            )
        return [(rows[p.task_id].job_id, p.task_id) for p in moved]

    def _lease(
        self, s: Session, manager: Any, want: int, roster: Roster, blocked: dict[str, set[str]]
    ) -> list[wire.Lease]:
        """Up to `want` runnable tasks that this Manager's Workers may run: by job priority,
        then age, then task order. Candidates are read a few at a time, job by job: reading
        a whole queue's rows (JSON columns and all) cost tens of milliseconds a sync.
        `blocked` gets the Workers kept off each job looked at, for the reply's blocklist."""
        if want <= 0 or not roster.capable:
            return []
        expires = utcnow() + self.lease_timeout
        granted: list[tuple[Any, JobRow]] = []
        scanned = 0
        for job_id in self._leasable_jobs(s, manager.name):
            kept_off = blocked_workers(s, {job_id}, self.blocklist_threshold, manager.id)
            blocked[job_id] = kept_off.get(job_id, set())
            allowed = roster.allowed(blocked[job_id])
            if not allowed:
                continue  # every Worker of this Manager failed this job too often
            job = s.get(JobRow, job_id)
            assert job is not None
            picked = []
            for task in self._candidates(s, job_id, want - len(granted)):
                scanned += 1
                if self._may_lease(s, task, allowed):
                    picked.append(task)
                if len(granted) + len(picked) >= want or scanned >= SCAN_LIMIT:
                    break
            # Written before the job's status is refreshed, which counts its tasks.
            leased = lease_tasks(s, [(t.id, t.status) for t in picked], manager.id, expires)
            granted += [(task, job) for task in picked if task.id in leased]
            if leased and job.status == JobStatus.QUEUED:
                transitions.refresh_job_status(s, job_id, self.max_failed_tasks)  # now active
            if len(granted) >= want or scanned >= SCAN_LIMIT:
                break
        failed = failed_by(s, [task.id for task, _ in granted], manager.id)
        files: dict[str, dict[str, str]] = {}  # job id -> its files, read once a sync
        return [
            self._lease_of(s, task, job, expires, failed.get(task.id, []), files)
            for task, job in granted
        ]

    def _blocklist(
        self, s: Session, manager_id: int, jobs: set[str], blocked: dict[str, set[str]]
    ) -> dict[str, list[str]]:
        """The Workers of this Manager kept off each of these jobs that keeps any off; the
        jobs leasing looked at are not read again (`blocked`, see _lease)."""
        unread = jobs - blocked.keys()
        blocked.update({job: set() for job in unread})
        blocked.update(blocked_workers(s, unread, self.blocklist_threshold, manager_id))
        return {job: sorted(blocked[job]) for job in jobs if blocked[job]}

    @staticmethod
    def _leasable_jobs(s: Session, site: str) -> list[str]:
        """Jobs with runnable tasks that may run on this site, in the order they lease."""
        return list(s.scalars(LEASABLE_JOBS, {"site": site}))

    @staticmethod
    def _candidates(s: Session, job_id: str, wanted: int) -> Iterator[Any]:
        """The job's runnable tasks in order, read a page at a time (rows other syncs are
        leasing right now are skipped on PostgreSQL). Each status is read in index order
        (ix_tasks_job_status_index): a page costs its own rows, not the job's."""
        after, size = -1, wanted + PAGE_SLACK
        s.flush()  # what this sync changed so far is seen; then plain rows, no ORM loading
        while True:
            found = [
                task
                for status in RUNNABLE_TASK_STATUSES
                for task in s.connection().execute(
                    CANDIDATES,
                    {"job_id": job_id, "in_status": status, "after": after, "size": size},
                )
            ]
            page = sorted(found, key=lambda task: task.index)[:size]
            yield from page
            if len(page) < size:
                return
            after, size = page[-1].index, min(size * 4, SCAN_LIMIT)

    def _may_lease(self, s: Session, task: Any, allowed: list[Capabilities]) -> bool:
        """Whether the task may run now, on one of the Workers allowed its job."""
        if task.depends_on and not dependencies_done(s, task):
            return False
        needs = Requirements.from_dict(task.requirements)
        return any(unmet(needs, cap) is None for cap in allowed)  # else another site may

    def _lease_of(
        self,
        s: Session,
        task: Any,
        job: JobRow,
        expires: datetime,
        failed_by: list[str],
        files: dict[str, dict[str, str]],
    ) -> wire.Lease:
        # Not validated again: every value was validated when the job was submitted, and
        # validating each lease cost a busy sync a tenth of its time.
        return wire.Lease.of_trusted(
            {
                "task_id": task.id,
                "job_id": job.id,
                "job_name": job.name,
                "job_priority": job.priority,
                "type": task.type,
                "name": task.name,
                "frames": task.frames,
                "command": task.command,
                "files": self._files_for(s, task, job, files),
                "lease_expires": expires,
                "requirements": task.requirements,
                "failed_by": failed_by,
            }
        )

    @staticmethod
    def _files_for(
        s: Session, task: Any, job: JobRow, job_files: dict[str, dict[str, str]]
    ) -> dict[str, str]:
        """What the Worker fetches: the job's files with the artifacts of the jobs it waited for
        (which win: the job waited to use them), or for a video the frames it encodes
        (`video_frames`: the same blobs, fetched through the Manager's cache like any job
        file). `job_files`
        keeps the former per job for the rest of the sync: one query a job, not a task."""
        if task.type != "ffmpeg":
            if job.id not in job_files:
                job_files[job.id] = {**job.files, **awaited_artifacts(s, job.id)}
            return job_files[job.id]
        return video_frames(s, job.id, set(task.frames))
