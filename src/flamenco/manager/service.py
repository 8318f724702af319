"""The Manager's logic: its Workers, the tasks it holds, and its cache of job files."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import secrets
import time
from collections import deque
from collections.abc import AsyncIterable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from flamenco import wire
from flamenco.blobs import BlobStore, check_file_name, check_relative_path
from flamenco.client import ApiError, AsyncApi, Unreachable
from flamenco.config import ManagerSettings
from flamenco.core.matching import Capabilities, Requirements, unmet
from flamenco.core.states import TaskStatus
from flamenco.db import utcnow
from flamenco.errors import BadRequest, NotFound, Unauthorized, Unavailable
from flamenco.manager.models import HeldTask, SeenUpdate, WorkerRow
from flamenco.outbox import FrameItem, Outbox
from flamenco.security import new_token, token_hash

log = logging.getLogger("flamenco.manager")


@dataclass(frozen=True)
class WorkerRef:
    """Who is calling: what a request needs of its Worker, without a database round trip."""

    id: str
    name: str


PICK_SCAN = 200  # queued tasks looked at per assignment

# Statuses after which a Worker no longer holds the task.
RELEASING_STATUSES = {
    TaskStatus.COMPLETED,
    TaskStatus.FAILED,
    TaskStatus.SOFT_FAILED,
    TaskStatus.CANCELED,
    TaskStatus.PAUSED,
    TaskStatus.QUEUED,
}


class ManagerService:
    def __init__(
        self,
        settings: ManagerSettings,
        sessions: sessionmaker,
        blobs: BlobStore,
        outbox: Outbox,
        server: AsyncApi,
        worker_timeout_s: float = 60.0,
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.blobs = blobs
        self.outbox = outbox
        self.server = server
        self.worker_timeout = timedelta(seconds=worker_timeout_s)
        self.link_wake = asyncio.Event()  # the outbox has something for the Server
        self.sync_wake = asyncio.Event()  # Workers wait for tasks, or the held set changed
        self._waiters: deque[asyncio.Event] = deque()  # long polls waiting for work
        self._tokens: dict[str, WorkerRef] = {}  # token hash -> Worker
        self._capabilities: dict[str, Capabilities] = {}  # Worker id -> what it can do
        self._idle: dict[str, float] = {}
        self._blob_locks: dict[str, asyncio.Lock] = {}
        self.blob_downloads = 0
        self.blocklist: dict[str, set[str]] = {}  # job id -> Worker names, from the Server

    # ---- Workers -----------------------------------------------------------------------------

    def register_worker(self, reg: wire.WorkerRegistration) -> wire.WorkerRegistered:
        if not hmac.compare_digest(reg.secret.encode(), self.settings.secret.encode()):
            raise Unauthorized("The join secret is wrong; use the one this Manager printed.")
        worker_id, token = secrets.token_hex(6), new_token("flw")
        info = reg.model_dump(exclude={"secret", "name"})
        with self.sessions.begin() as s:
            s.add(WorkerRow(id=worker_id, name=reg.name, token_hash=token_hash(token), info=info))
        log.info("worker %s registered as %s", reg.name, worker_id, extra={"worker": reg.name})
        return wire.WorkerRegistered(worker_id=worker_id, token=token)

    def authenticate_worker(self, token: str | None) -> WorkerRef:
        if not token:
            raise Unauthorized("The Worker token is missing.")
        digest = token_hash(token)
        if digest not in self._tokens:
            with self.sessions() as s:
                worker = s.scalar(select(WorkerRow).where(WorkerRow.token_hash == digest))
            if worker is None:
                raise Unauthorized(
                    "The Worker token is wrong; register again with the join secret."
                )
            self._tokens[digest] = WorkerRef(worker.id, worker.name)
        return self._tokens[digest]

    def _capabilities_of(self, worker: WorkerRow) -> Capabilities:
        if worker.id not in self._capabilities:
            info = wire.WorkerInfo.model_validate(worker.info)
            self._capabilities[worker.id] = info.capabilities()
        return self._capabilities[worker.id]

    async def worker_sync(self, worker: WorkerRef, req: wire.WorkerSync) -> wire.WorkerSyncReply:
        cancel, wanted = self._check_in(worker.id, req)
        if not req.want_task or cancel or wanted != "awake":
            return wire.WorkerSyncReply(cancel=cancel, state=wanted)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + req.wait_s
        try:
            woken = False
            while (assignment := self._assign(worker.id, req.warm_job_id)) is None:
                if woken:
                    self._notify_work()  # the new task was not for us: pass the turn on
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                self._idle[worker.id] = time.monotonic()
                self.link_wake.set()
                self.sync_wake.set()
                woken = await self._wait_for_work(remaining)
        finally:
            self._idle.pop(worker.id, None)
        return wire.WorkerSyncReply(assignment=assignment)

    def _check_in(self, worker_id: str, req: wire.WorkerSync) -> tuple[list[str], str]:
        """Record that the Worker is alive; hand it the tasks it must stop and its wanted state."""
        with self.sessions.begin() as s:
            worker = s.get(WorkerRow, worker_id)
            assert worker is not None
            worker.last_seen, worker.status = utcnow(), req.status
            if req.info is not None:
                worker.info = req.info.model_dump(mode="json")
                self._capabilities.pop(worker_id, None)
            if req.stats is not None:
                worker.stats = req.stats.model_dump()
            cancel, worker.cancel = list(worker.cancel), []
            if req.running_task_id and req.running_task_id != worker.current_task:
                # Back after being declared lost: its task went to someone else.
                cancel.append(req.running_task_id)
            if req.progress:
                held = s.scalar(select(HeldTask).where(HeldTask.task_id == req.progress.task_id))
                if held is not None and held.worker_id == worker_id:
                    held.progress, held.activity = req.progress.progress, req.progress.activity
            return cancel, worker.wanted

    def _assign(self, worker_id: str, warm_job_id: str | None) -> wire.Assignment | None:
        with self.sessions.begin() as s:
            worker = s.get(WorkerRow, worker_id)
            assert worker is not None
            mine = s.scalar(select(HeldTask).where(HeldTask.worker_id == worker_id))
            task = mine or self._pick(s, worker, warm_job_id)
            if task is None:
                return None
            task.state, task.worker_id = "assigned", worker_id
            worker.current_task = task.task_id
            lease = wire.Lease.model_validate(task.lease)
        log.info(
            "task %s -> worker %s",
            lease.task_id,
            worker_id,
            extra={"job": lease.job_id, "task": lease.task_id, "worker": worker_id},
        )
        return wire.Assignment(**lease.model_dump(include=set(wire.Assignment.model_fields)))

    def _pick(self, s: Session, worker: WorkerRow, warm_job_id: str | None) -> HeldTask | None:
        """The next task this Worker may run.

        Highest priority first; among equals, the job whose Blender the Worker has warm.
        A task the Worker failed before goes to another Worker when one is around.
        """
        capabilities = self._capabilities_of(worker)
        queued = s.scalars(
            select(HeldTask)
            .where(HeldTask.state == "queued")
            .order_by(HeldTask.priority.desc(), HeldTask.seq)
            .limit(PICK_SCAN)
        ).all()
        fitting = [t for t in queued if self._may_run(t, worker.name, capabilities)]
        if any(worker.name in t.lease.get("failed_by", []) for t in fitting):
            others = self._other_awake_workers(s, worker)
            fitting = [t for t in fitting if not self._better_elsewhere(t, worker.name, others)]
        if not fitting:
            return None
        best = [t for t in fitting if t.priority == fitting[0].priority]
        warm = [t for t in best if t.job_id == warm_job_id]
        return (warm or best)[0]

    def _better_elsewhere(
        self, task: HeldTask, worker_name: str, others: dict[str, Capabilities]
    ) -> bool:
        """A task this Worker failed goes to another Worker that may run it, if there is one."""
        if worker_name not in task.lease.get("failed_by", []):
            return False
        return any(self._may_run(task, name, cap) for name, cap in others.items())

    def _may_run(self, task: HeldTask, worker_name: str, capabilities: Capabilities) -> bool:
        if worker_name in self.blocklist.get(task.job_id, ()):
            return False
        return unmet(Requirements.from_dict(task.lease.get("requirements")), capabilities) is None

    def _other_awake_workers(self, s: Session, worker: WorkerRow) -> dict[str, Capabilities]:
        others = s.scalars(
            select(WorkerRow).where(WorkerRow.id != worker.id, WorkerRow.status == "awake")
        )
        return {w.name: self._capabilities_of(w) for w in others}

    def apply_worker_updates(self, worker: WorkerRef, updates: list[wire.TaskUpdate]) -> list[str]:
        with self.sessions.begin() as s:
            for update in updates:
                if s.get(SeenUpdate, update.update_id) is not None:
                    continue
                s.add(SeenUpdate(update_id=update.update_id))
                held = s.scalar(select(HeldTask).where(HeldTask.task_id == update.task_id))
                if held is None or held.worker_id != worker.id:
                    log.info(
                        "update %s for task %s not held by %s: ignored",
                        update.update_id,
                        update.task_id,
                        worker.name,
                        extra={"worker": worker.name},
                    )
                    continue
                self._hold_or_release(s, held, worker, update)
                self.outbox.add_update(update.model_copy(update={"worker": worker.name}))
        self.link_wake.set()
        return [u.update_id for u in updates]

    @staticmethod
    def _hold_or_release(s: Session, held: HeldTask, worker: WorkerRef, u: wire.TaskUpdate) -> None:
        if u.progress is not None:
            held.progress = u.progress
        if u.activity is not None:
            held.activity = u.activity
        if u.status in RELEASING_STATUSES:
            s.delete(held)
            row = s.get(WorkerRow, worker.id)
            if row is not None and row.current_task == held.task_id:
                row.current_task = None

    async def receive_frame(
        self,
        worker: WorkerRef,
        task_id: str,
        frame: int,
        filename: str,
        sha256: str,
        body: AsyncIterable[bytes],
    ) -> None:
        check_relative_path(filename)
        if "/" in filename:
            raise BadRequest(f"The frame file name '{filename}' must not contain a folder.")
        with self.sessions() as s:
            held = s.scalar(select(HeldTask).where(HeldTask.task_id == task_id))
            if held is None or held.worker_id != worker.id:
                raise NotFound(f"Task '{task_id}' is not assigned to this Worker.")
        digest = await self.blobs.put_stream(body, expected=sha256)
        self.outbox.add_frame(FrameItem(task_id, frame, digest, filename))
        self.link_wake.set()

    async def receive_artifact(
        self, worker: WorkerRef, task_id: str, name: str, sha256: str, body: AsyncIterable[bytes]
    ) -> None:
        """Another output of a task (its preview video): queued for the Server like a frame."""
        check_file_name(name, "artifact")
        with self.sessions() as s:
            held = s.scalar(select(HeldTask).where(HeldTask.task_id == task_id))
            if held is None or held.worker_id != worker.id:
                raise NotFound(f"Task '{task_id}' is not assigned to this Worker.")
        digest = await self.blobs.put_stream(body, expected=sha256)
        self.outbox.add_frame(FrameItem(task_id, 0, digest, name, kind="artifact"))
        self.link_wake.set()

    # ---- job files ---------------------------------------------------------------------------

    async def blob_path(self, sha256: str) -> Path:
        """The cached blob, fetched from the Server once however many Workers ask at once."""
        path = self.blobs.path(sha256)
        if path.is_file():
            return path
        lock = self._blob_locks.setdefault(sha256, asyncio.Lock())
        async with lock:
            if not path.is_file():
                await self._download(sha256)
        self._blob_locks.pop(sha256, None)
        return path

    async def _download(self, sha256: str) -> None:
        try:
            await self.server.download_blob(sha256, self.blobs)
        except ApiError as exc:
            if exc.status == 404:
                raise NotFound(f"The Server has no blob {sha256}.") from exc
            raise Unavailable(f"The Server refused blob {sha256}: {exc.message}") from exc
        except Unreachable as exc:
            raise Unavailable(
                "The Server cannot be reached to fetch the blob; retry later."
            ) from exc
        self.blob_downloads += 1

    # ---- the Server side ---------------------------------------------------------------------

    def take_worker_states(self, states: dict[str, str]) -> None:
        """Operators' wishes from the Server: which Workers sleep, wake or are disabled."""
        if not states:
            return
        with self.sessions.begin() as s:
            for worker in s.scalars(select(WorkerRow).where(WorkerRow.name.in_(states))):
                worker.wanted = states[worker.name]

    def take_blocklist(self, blocklist: dict[str, list[str]]) -> None:
        self.blocklist = {job_id: set(names) for job_id, names in blocklist.items()}

    def take_leases(self, leases: list[wire.Lease]) -> None:
        if not leases:
            return
        with self.sessions.begin() as s:
            known = set(
                s.scalars(
                    select(HeldTask.task_id).where(
                        HeldTask.task_id.in_([lease.task_id for lease in leases])
                    )
                )
            )
            for lease in leases:
                if lease.task_id not in known:
                    s.add(
                        HeldTask(
                            task_id=lease.task_id,
                            job_id=lease.job_id,
                            priority=lease.job_priority,
                            lease=lease.model_dump(mode="json"),
                        )
                    )
        self._notify_work(len(leases))

    def revoke(self, task_ids: list[str]) -> None:
        if not task_ids:
            return
        with self.sessions.begin() as s:
            for held in s.scalars(select(HeldTask).where(HeldTask.task_id.in_(task_ids))).all():
                if held.worker_id:
                    worker = s.get(WorkerRow, held.worker_id)
                    if worker is not None:
                        worker.cancel = [*worker.cancel, held.task_id]
                log.info(
                    "task %s revoked by the Server",
                    held.task_id,
                    extra={"job": held.job_id, "task": held.task_id},
                )
                s.delete(held)

    async def _wait_for_work(self, timeout: float) -> bool:
        """Wait until woken for new work (True) or until the timeout (False)."""
        waiter = asyncio.Event()
        self._waiters.append(waiter)
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(waiter.wait(), timeout)
        finally:
            if not waiter.is_set():
                self._waiters.remove(waiter)
        return waiter.is_set()

    def _notify_work(self, count: int = 1) -> None:
        """Wake as many waiting Workers as there are new tasks, not all of them.

        A woken Worker that cannot take the task passes the turn on (see worker_sync).
        """
        for _ in range(min(count, len(self._waiters))):
            self._waiters.popleft().set()

    def workers_waiting(self) -> bool:
        return bool(self._idle)

    def want(self) -> int:
        """How many more tasks to lease: one per idle Worker, plus a prefetch while any works."""
        with self.sessions() as s:
            count = select(func.count())
            queued = s.scalar(count.select_from(HeldTask).where(HeldTask.state == "queued")) or 0
            working = s.scalar(
                count.select_from(WorkerRow).where(WorkerRow.status.in_(wire.WORKING_STATUSES))
            )
        prefetch = self.settings.prefetch if working else 0
        return max(0, len(self._idle) + prefetch - queued)

    def held_ids(self) -> list[str]:
        with self.sessions() as s:
            return list(s.scalars(select(HeldTask.task_id)))

    def progress(self) -> list[wire.Progress]:
        with self.sessions() as s:
            rows = s.scalars(select(HeldTask).where(HeldTask.state == "assigned")).all()
            return [
                wire.Progress(task_id=r.task_id, progress=r.progress, activity=r.activity)
                for r in rows
            ]

    def workers(self) -> list[wire.WorkerSummary]:
        with self.sessions() as s:
            running = {
                h.worker_id: h
                for h in s.scalars(select(HeldTask).where(HeldTask.state == "assigned"))
            }
            return [self._summary(w, running.get(w.id)) for w in s.scalars(select(WorkerRow))]

    @staticmethod
    def _summary(w: WorkerRow, task: HeldTask | None) -> wire.WorkerSummary:
        info = wire.WorkerInfo.model_validate(w.info)
        return wire.WorkerSummary(
            name=w.name,
            status=w.status,
            task_id=w.current_task,
            last_seen=w.last_seen,
            tags=info.tags,
            gpus=info.gpus,
            blender_version=info.blender_version,
            platform=info.platform,
            cpu_count=info.cpu_count,
            memory_mb=info.memory_mb,
            **wire.WorkerStats.model_validate(w.stats).model_dump(),
            progress=task.progress if task else 0.0,
            activity=task.activity if task else "",
        )

    def reap_silent_workers(self) -> None:
        """A Worker silent past the timeout is offline; its task goes back to the queue."""
        cutoff = utcnow() - self.worker_timeout
        with self.sessions.begin() as s:
            lost = s.scalars(
                select(WorkerRow).where(WorkerRow.last_seen < cutoff, WorkerRow.status != "offline")
            ).all()
            for worker in lost:
                log.warning(
                    "worker %s is silent; marked offline",
                    worker.name,
                    extra={"worker": worker.name},
                )
                worker.status, worker.current_task = "offline", None
                requeued = s.scalars(select(HeldTask).where(HeldTask.worker_id == worker.id)).all()
                for held in requeued:
                    held.state, held.worker_id, held.progress = "queued", None, 0.0
                self._notify_work(len(requeued))
