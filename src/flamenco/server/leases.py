"""Handing tasks to Managers, taking their updates, and taking back what they let go."""

from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy import ColumnElement, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from flamenco import wire
from flamenco.core.compiler import preview_frame_path
from flamenco.core.matching import Requirements, unmet
from flamenco.core.states import (
    RUNNABLE_TASK_STATUSES,
    TERMINAL_TASK_STATUSES,
    InvalidTransition,
    JobStatus,
    TaskStatus,
    check_task_transition,
)
from flamenco.db import utcnow
from flamenco.errors import NotFound
from flamenco.server.events import EventBus
from flamenco.server.jobs import JobService
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

log = logging.getLogger("flamenco.server.leases")

LEASABLE_JOB_STATUSES = (JobStatus.QUEUED, JobStatus.ACTIVE)
HELD_TASK_STATUSES = (TaskStatus.LEASED, TaskStatus.ACTIVE)
LOG_TAIL_CHARS = 4000
SCAN_LIMIT = 500  # candidate tasks looked at per lease request


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
    ) -> None:
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
        with self.sessions.begin() as s:
            self.expire_leases(s)
            row = s.get(ManagerRow, manager.id)
            assert row is not None
            row.workers = [w.model_dump(mode="json") for w in req.workers]
            revoked = self._renew(s, manager.id, req.held)
            touched = self._apply_progress(s, manager.id, req.progress)
            workers = [w for w in req.workers if w.status in wire.WORKING_STATUSES]
            leases = self._lease(s, row, req.want, workers)
            jobs = {lease.job_id for lease in leases} | self._jobs_of(s, req.held)
            blocked = blocked_workers(s, jobs, self.blocklist_threshold, manager.id)
            states = dict(row.worker_states)
        self.events.publish("managers")
        for job_id, task_id in touched + [(lease.job_id, lease.task_id) for lease in leases]:
            self._publish_task(job_id, task_id)
        return wire.ManagerSyncReply(
            leases=leases,
            revoked=revoked,
            next_sync_s=self.sync_interval_s,
            blocklist={job: sorted(names) for job, names in blocked.items()},
            worker_states=states,
        )

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

    @staticmethod
    def _jobs_of(s: Session, task_ids: list[str]) -> set[str]:
        if not task_ids:
            return set()
        return set(s.scalars(select(TaskRow.job_id).where(TaskRow.id.in_(task_ids))))

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
                    status="online" if m.last_seen and m.last_seen > cutoff else "offline",
                    workers=[wire.WorkerSummary.model_validate(w) for w in m.workers],
                )
                for m in rows
            ]

    def expire_leases(self, s: Session) -> None:
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
            task.status, task.manager_id, task.lease_expires = TaskStatus.QUEUED, None, None
            task.worker, task.progress = None, 0.0

    def _renew(self, s: Session, manager_id: int, held: list[str]) -> list[str]:
        """Extend the leases the Manager still holds; list those it must drop."""
        if not held:
            return []
        expires = utcnow() + self.lease_timeout
        revoked = []
        rows = {t.id: t for t in s.scalars(select(TaskRow).where(TaskRow.id.in_(held)))}
        jobs = {
            j.id: j.status
            for j in s.scalars(
                select(JobRow).where(JobRow.id.in_({t.job_id for t in rows.values()}))
            )
        }
        for task_id in held:
            task = rows.get(task_id)
            if (
                task is None
                or task.manager_id != manager_id
                or task.status not in HELD_TASK_STATUSES
                or jobs.get(task.job_id) not in LEASABLE_JOB_STATUSES
            ):
                revoked.append(task_id)
                continue
            task.lease_expires = expires
        return revoked

    def _apply_progress(
        self, s: Session, manager_id: int, progress: list[wire.Progress]
    ) -> list[tuple[str, str]]:
        """Store volatile progress; return the (job, task) pairs that moved."""
        moved = []
        for p in progress:
            task = s.get(TaskRow, p.task_id)
            if (
                task is not None
                and task.manager_id == manager_id
                and task.status in HELD_TASK_STATUSES
                and (task.progress, task.activity) != (p.progress, p.activity)
            ):
                task.progress, task.activity = p.progress, p.activity
                moved.append((task.job_id, task.id))
        return moved

    def _publish_task(self, job_id: str, task_id: str, logged: bool = False) -> None:
        self.events.publish("task", job_id=job_id, id=task_id)
        self.events.publish("job", id=job_id)
        if logged:
            self.events.publish("log", job_id=job_id, task_id=task_id)

    def _lease(
        self, s: Session, manager: ManagerRow, want: int, workers: list[wire.WorkerSummary]
    ) -> list[wire.Lease]:
        if want <= 0 or not workers:
            return []
        manager_id = manager.id
        capable = {w.name: w.capabilities() for w in workers}
        blocked: dict[str, set[str]] = {}
        candidates = s.execute(
            select(TaskRow, JobRow)
            .join(JobRow, TaskRow.job_id == JobRow.id)
            .where(
                TaskRow.status.in_(RUNNABLE_TASK_STATUSES),
                JobRow.status.in_(LEASABLE_JOB_STATUSES),
                self._allowed_on(manager.name),
            )
            .order_by(JobRow.priority.desc(), JobRow.created, JobRow.id, TaskRow.index)
            .limit(max(want * 4 + 16, SCAN_LIMIT))
            .with_for_update(skip_locked=True, of=TaskRow)
        ).all()
        expires = utcnow() + self.lease_timeout
        leases = []
        for task, job in candidates:
            if len(leases) >= want:
                break
            if task.depends_on and not self._dependencies_done(s, task):
                continue
            if job.id not in blocked:
                found = blocked_workers(s, {job.id}, self.blocklist_threshold, manager_id)
                blocked[job.id] = found.get(job.id, set())
            needs = Requirements.from_dict(task.requirements)
            if not any(
                unmet(needs, cap) is None and name not in blocked[job.id]
                for name, cap in capable.items()
            ):
                continue  # none of this Manager's Workers may run it; another site may
            task.status, task.manager_id, task.lease_expires = (
                TaskStatus.LEASED,
                manager_id,
                expires,
            )
            leases.append(
                wire.Lease(
                    task_id=task.id,
                    job_id=job.id,
                    job_name=job.name,
                    job_priority=job.priority,
                    type=task.type,
                    name=task.name,
                    frames=task.frames,
                    command=task.command,
                    files=self._files_for(s, task, job),
                    lease_expires=expires,
                    requirements=task.requirements,
                    failed_by=failed_by(s, task.id, manager_id),
                )
            )
        for job_id in {lease.job_id for lease in leases}:
            JobService.refresh_job_status(s, job_id, self.max_failed_tasks)
        return leases

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
        """Apply each update once; every id received is acknowledged, applied or not."""
        acknowledged = []
        for update in updates:
            job_id = None  # stays None for a replay: nothing changed, nothing to announce
            try:
                with self.sessions.begin() as s:
                    if s.get(AppliedUpdate, update.update_id) is None:
                        task = s.get(TaskRow, update.task_id)
                        job_id = task.job_id if task is not None else None
                        outcome = self._apply(s, manager.id, update)
                        s.add(
                            AppliedUpdate(
                                update_id=update.update_id,
                                task_id=update.task_id,
                                outcome=outcome,
                                status=update.status,
                                worker=update.worker,
                                manager_id=manager.id,
                            )
                        )
                if job_id is not None:
                    self._publish_task(job_id, update.task_id, bool(update.log or update.error))
            except IntegrityError:
                pass  # the same update arrived twice at once; the other one applied it.
            acknowledged.append(update.update_id)
        return acknowledged

    def _apply(self, s: Session, manager_id: int, update: wire.TaskUpdate) -> str:
        task = s.get(TaskRow, update.task_id)
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
            try:
                check_task_transition(TaskStatus(task.status), new)
            except InvalidTransition as exc:
                log.warning("task %s: %s", task.id, exc, extra=ctx)
                return "invalid-transition"
            log.info("task %s: %s -> %s", task.id, task.status, new, extra=ctx)
            self._enter(task, new)
            JobService.refresh_job_status(s, task.job_id, self.max_failed_tasks)
        return "applied"

    def _outcome_status(self, task: TaskRow, update: wire.TaskUpdate) -> TaskStatus:
        """A failure is retried (soft-failed) until the task has failed too often."""
        if update.status != TaskStatus.FAILED:
            return TaskStatus(update.status)
        task.failure_count += 1
        if task.failure_count < self.max_task_failures:
            return TaskStatus.SOFT_FAILED
        return TaskStatus.FAILED

    @staticmethod
    def _enter(task: TaskRow, new: TaskStatus) -> None:
        task.status = new
        if new == TaskStatus.COMPLETED:
            task.progress, task.lease_expires = 1.0, None
        elif new in (TaskStatus.SOFT_FAILED, TaskStatus.FAILED, TaskStatus.QUEUED):
            task.manager_id, task.lease_expires, task.progress = None, None, 0.0

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
