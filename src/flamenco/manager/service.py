"""The Manager's logic: its Workers, the tasks it holds, and its cache of job files.

Everything is decided in memory; `ManagerStore` writes it behind to SQLite, and answers that
must survive a crash wait for that write (see store.py). This module is the Workers' side:
registration, their syncs and assignments, their updates, frames and artifacts;
`server_side.py` what the link to the Server reads and takes, `job_files.py` the job files.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import secrets
import time
from collections import OrderedDict, deque
from datetime import timedelta

from flamenco import wire
from flamenco.aio import Gone
from flamenco.blob_cache import BoundedBlobStore
from flamenco.blobs import UploadBody
from flamenco.client import AsyncApi
from flamenco.config import ManagerSettings
from flamenco.core.matching import Capabilities, unmet
from flamenco.core.names import check_artifact_name, check_frame_file_name, quote_name
from flamenco.core.states import RELEASING_TASK_STATUSES
from flamenco.db import utcnow
from flamenco.errors import BadRequest, Conflict, NotFound, Unauthorized, writing
from flamenco.manager.job_files import JobFiles
from flamenco.manager.join_secret import JoinSecret
from flamenco.manager.queue import TaskQueue
from flamenco.manager.server_side import ServerSide
from flamenco.manager.store import HeldTask, ManagerStore, WorkerState
from flamenco.manager.work_waiters import WorkWaiters
from flamenco.outbox import FrameItem, Outbox
from flamenco.security import new_token, token_hash

log = logging.getLogger("flamenco.manager")

SEEN_UPDATES = 100_000  # update ids remembered to drop replays (the Server drops them too)
ASSIGNMENT_FIELDS = tuple(wire.Assignment.model_fields)  # each taken from the task's lease


class ManagerService(ServerSide, JobFiles):
    def __init__(
        self,
        settings: ManagerSettings,
        store: ManagerStore,
        blobs: BoundedBlobStore,
        outbox: Outbox,
        server: AsyncApi,
        worker_timeout_s: float = 60.0,
        join_secret: JoinSecret | None = None,
    ) -> None:
        self.settings = settings
        self.join_secret = join_secret or JoinSecret(settings.secret, settings.data_dir)
        self.store = store
        self.blobs = blobs
        self.outbox = outbox
        self.server = server
        self.worker_timeout = timedelta(seconds=worker_timeout_s)
        self.link_wake = asyncio.Event()  # the outbox has something for the Server
        self.sync_wake = asyncio.Event()  # the Manager wants tasks from the Server now
        self.worker_waits = asyncio.Event()  # ... and a Worker waits for one: do not delay
        self.waiters = WorkWaiters()  # long polls waiting for work
        self._idle: dict[str, float] = {}  # Worker id -> waiting for work since
        self._blob_locks: dict[str, asyncio.Lock] = {}
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._finished: deque[float] = deque()  # when recent tasks ended, for the task rate
        self.blob_downloads = 0
        self.blob_download_bytes = 0  # for /metrics (manager/metrics.py)
        self.blocklist: dict[str, set[str]] = {}  # job id -> Worker names, from the Server
        self.workers_by_id: dict[str, WorkerState] = {}
        self._working: set[str] = set()  # ids of Workers in a WORKING_STATUSES status
        self._by_token: dict[str, WorkerState] = {}
        self.held: dict[str, HeldTask] = {}
        self.queue = TaskQueue()
        self._next_seq = 1
        self._load()

    def _load(self) -> None:
        for worker in self.store.load_workers():
            self._add_worker(worker)  # a fresh last_seen: a full timeout to check in again
        for held in self.store.load_tasks():
            self.held[held.task_id] = held
            if held.state == "queued":
                self.queue.add(held)
            self._next_seq = held.seq + 1

    def _add_worker(self, worker: WorkerState) -> None:
        self.workers_by_id[worker.id] = worker
        self._by_token[worker.token_hash] = worker
        self._set_status(worker, worker.status)

    def _set_status(self, worker: WorkerState, status: str) -> None:
        worker.status = status
        if status in wire.WORKING_STATUSES:
            self._working.add(worker.id)
        else:
            self._working.discard(worker.id)

    # ---- Workers -----------------------------------------------------------------------------

    async def register_worker(
        self, reg: wire.WorkerRegistration, token: str | None = None
    ) -> wire.WorkerRegistered:
        """A Worker joins with the join secret. `token` is the one it has from an earlier
        registration, if any: with it, a Worker may register again under its own name while
        that name is online; any other registration under an online Worker's name is refused."""
        if not self.join_secret.matches(reg.secret):
            raise Unauthorized(
                "The join secret is wrong or was replaced; use this Manager's current one."
            )
        info = reg.model_dump(mode="json", exclude={"secret", "name"})
        same_name = (w for w in self.workers_by_id.values() if w.name == reg.name)
        online = next((w for w in same_name if w.status != "offline"), None)
        if online is not None:
            if not token or not hmac.compare_digest(token_hash(token), online.token_hash):
                raise Conflict(
                    f"A Worker named {quote_name(reg.name)} is already online at this Manager; "
                    "start this one with another --name."
                )
            online.set_info(info)  # the same Worker again: it keeps its identity and token
            self.store.worker_changed(online)
            await self.store.saved()
            log.info("worker %s registered again", reg.name, extra={"worker": reg.name})
            return wire.WorkerRegistered(worker_id=online.id, token=token)
        worker_id, token = secrets.token_hex(6), new_token("flw")
        worker = WorkerState(worker_id, reg.name, token_hash(token), info)
        self._add_worker(worker)
        self.store.worker_changed(worker)
        await self.store.saved()
        log.info("worker %s registered as %s", reg.name, worker_id, extra={"worker": reg.name})
        return wire.WorkerRegistered(worker_id=worker_id, token=token)

    def authenticate_worker(self, token: str | None) -> WorkerState:
        if not token:
            raise Unauthorized("The Worker token is missing.")
        worker = self._by_token.get(token_hash(token))
        if worker is None:
            raise Unauthorized(
                "This Worker token is not known to this Manager; "
                "register again with the join secret."
            )
        return worker

    async def worker_sync(
        self, worker: WorkerState, req: wire.WorkerSync, gone: Gone | None = None
    ) -> wire.WorkerSyncReply:
        """Updates carried along, a check-in, and (long-polled) the next task if it wants one;
        `gone` tells whether the Worker has closed the request meanwhile."""
        applied = self.apply_worker_updates(worker, req.updates) if req.updates else []
        cancel = self._check_in(worker, req)
        assignment = None
        if req.want_task and not cancel and worker.wanted == "awake" and req.status != "offline":
            assignment = await self._wait_for_assignment(worker, req, gone)
        await self.saved()
        return wire.WorkerSyncReply(
            assignment=assignment, cancel=cancel, state=worker.wanted, applied=applied
        )

    async def saved(self) -> None:
        """Return once every change so far (state and outbox) is on disk: then answer."""
        await self.store.saved()
        if self.outbox.writer is not self.store.writer:  # else written in the same turn
            await self.outbox.saved()

    async def _wait_for_assignment(
        self, worker: WorkerState, req: wire.WorkerSync, gone: Gone | None
    ) -> wire.Assignment | None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + req.wait_s
        try:
            woken = False
            while (assignment := self._assign(worker, req)) is None:
                if woken:
                    self._notify_work()  # the new task was not for us: pass the turn on
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return None
                self._idle[worker.id] = time.monotonic()
                self._want_more()
                self.worker_waits.set()
                woken = await self.waiters.wait(remaining)
                if woken and gone is not None and await gone():
                    # A Worker that stopped while it waited: the task would wait with it until
                    # it is found silent. The next Worker in line gets it.
                    self._notify_work()
                    return None
            return assignment
        finally:
            self._idle.pop(worker.id, None)

    def _check_in(self, worker: WorkerState, req: wire.WorkerSync) -> list[str]:
        """Record that the Worker is alive; return the tasks it must stop."""
        worker.last_seen = utcnow()
        if req.status == "offline":  # it stops: shown offline at once, its tasks go to others
            if worker.status != "offline":
                log.info("worker %s signed off", worker.name, extra={"worker": worker.name})
                self._take_offline(worker)
            return []
        changed = worker.status != req.status or bool(worker.cancel)
        self._set_status(worker, req.status)
        if req.info is not None:
            worker.set_info(req.info.model_dump(mode="json"))
            changed = True
        if req.stats is not None:
            worker.stats = req.stats.model_dump()
        cancel, worker.cancel = worker.cancel, []
        for task_id in (req.running_task_id, req.next_task_id):
            if task_id and task_id not in worker.tasks:
                # Back after being declared lost (or revoked): the task went to someone else.
                cancel.append(task_id)
        if req.progress:
            held = self.held.get(req.progress.task_id)
            if held is not None and held.worker_id == worker.id:
                held.progress, held.activity = req.progress.progress, req.progress.activity
        if changed:
            self.store.worker_changed(worker)
        return cancel

    def _assign(self, worker: WorkerState, req: wire.WorkerSync) -> wire.Assignment | None:
        """A task for the Worker: one it was given but never heard of (the answer got lost),
        else a new one if it holds fewer than it may (one, or two when reserving its next)."""
        known = {req.running_task_id, req.next_task_id}
        unheard = [task_id for task_id in worker.tasks if task_id not in known]
        if unheard:
            held = self.held[unheard[0]]
        else:
            if len(worker.tasks) >= (2 if req.running_task_id else 1):
                return None
            if len(self.queue) <= self.waiters.promised:
                return None  # kept for Workers that waited longer and were woken for them
            picked = self._pick(worker, req.warm_job_id)
            if picked is None:
                return None
            held = picked
            self.queue.remove(held)
            held.state, held.worker_id = "assigned", worker.id
            worker.tasks.append(held.task_id)
            self.store.task_changed(held)
            self.store.worker_changed(worker)
        log.info(
            "task %s -> worker %s",
            held.task_id,
            worker.name,
            extra={"job": held.job_id, "task": held.task_id, "worker": worker.name},
        )
        # Not validated again: the lease was, when it arrived.
        lease = held.lease
        return wire.Assignment.of_trusted(
            {name: getattr(lease, name) for name in ASSIGNMENT_FIELDS}
        )

    def _pick(self, worker: WorkerState, warm_job_id: str | None) -> HeldTask | None:
        """The next task this Worker may run (see TaskQueue.pick).

        A task the Worker failed before goes to another Worker when one is around that has
        not failed it too (else each of them would leave it to the other, for ever).
        """
        capabilities = worker.capabilities
        others: dict[str, Capabilities] | None = None

        def fits(held: HeldTask) -> bool:
            nonlocal others
            if not self._may_run(held, worker.name, capabilities):
                return False
            if worker.name not in held.lease.failed_by:
                return True
            if others is None:
                others = self._other_awake_workers(worker)
            return not any(
                self._may_run(held, name, cap)
                for name, cap in others.items()
                if name not in held.lease.failed_by
            )

        return self.queue.pick(fits, warm_job_id)

    def _may_run(self, held: HeldTask, worker_name: str, capabilities: Capabilities) -> bool:
        if worker_name in self.blocklist.get(held.job_id, ()):
            return False
        return unmet(held.requirements, capabilities) is None

    def _other_awake_workers(self, worker: WorkerState) -> dict[str, Capabilities]:
        return {
            w.name: w.capabilities
            for w in self.workers_by_id.values()
            if w.id != worker.id and w.status == "awake"
        }

    def apply_worker_updates(
        self, worker: WorkerState, updates: list[wire.TaskUpdate]
    ) -> list[str]:
        upstream = []
        for update in updates:
            if update.update_id in self._seen:
                continue
            self._remember(update.update_id)
            held = self.held.get(update.task_id)
            if held is None or held.worker_id != worker.id:
                log.info(
                    "update %s for task %s not held by %s: ignored",
                    update.update_id,
                    update.task_id,
                    worker.name,
                    extra={"worker": worker.name, "task": update.task_id},
                )
                continue
            self._hold_or_release(held, worker, update)
            # The Server hears who sent it. Set on the request's own object, which nothing
            # reads after this: a copy of every update cost more than its journey upstream.
            update.worker = worker.name
            upstream.append(update)
        if upstream:
            self.outbox.add_updates(upstream)
            self.link_wake.set()
        return [u.update_id for u in updates]

    def _remember(self, update_id: str) -> None:
        self._seen[update_id] = None
        if len(self._seen) > SEEN_UPDATES:
            self._seen.popitem(last=False)

    def _hold_or_release(self, held: HeldTask, worker: WorkerState, u: wire.TaskUpdate) -> None:
        if u.progress is not None:
            held.progress = u.progress
        if u.activity is not None:
            held.activity = u.activity
        if u.status not in RELEASING_TASK_STATUSES:
            return
        self._forget(held)
        self._finished.append(time.monotonic())
        self._want_more()

    def _forget(self, held: HeldTask) -> None:
        del self.held[held.task_id]
        self.queue.remove(held)
        self.store.task_gone(held.task_id)
        worker = self.workers_by_id.get(held.worker_id or "")
        if worker is not None and held.task_id in worker.tasks:
            worker.tasks.remove(held.task_id)
            self.store.worker_changed(worker)

    def _held_by(self, worker: WorkerState, task_id: str) -> HeldTask:
        held = self.held.get(task_id)
        if held is None or held.worker_id != worker.id:
            raise NotFound(f"Task '{task_id}' is not assigned to this Worker.")
        return held

    async def receive_frame(
        self,
        worker: WorkerState,
        task_id: str,
        frame: int,
        filename: str,
        sha256: str,
        body: UploadBody,
    ) -> None:
        check_frame_file_name(filename)
        held = self._held_by(worker, task_id)
        if frame not in held.lease.frames:
            raise BadRequest(f"Frame {frame} is not one of the frames of task '{task_id}'.")
        with writing(f"Frame {frame} of task {task_id}"):
            digest = await self.blobs.put_stream(body.chunks, sha256, size_hint=body.size)
        self.outbox.add_frame(FrameItem(task_id, frame, digest, filename, job_id=held.job_id))
        self.link_wake.set()
        await self.outbox.saved()

    async def receive_artifact(
        self, worker: WorkerState, task_id: str, name: str, sha256: str, body: UploadBody
    ) -> None:
        """Another output of a task (its preview video): queued for the Server like a frame."""
        check_artifact_name(name)
        held = self._held_by(worker, task_id)
        with writing(f"The file {quote_name(name)} of task {task_id}"):
            digest = await self.blobs.put_stream(body.chunks, sha256, size_hint=body.size)
        self.outbox.add_frame(FrameItem(task_id, 0, digest, name, "artifact", held.job_id))
        self.link_wake.set()
        await self.outbox.saved()

    # ---- waiting Workers ---------------------------------------------------------------------

    def _notify_work(self, count: int = 1) -> None:
        self.waiters.notify(count)

    def _want_more(self) -> None:
        if self.want() > 0:
            self.sync_wake.set()

    def workers_waiting(self) -> bool:
        return bool(self._idle)

    def reap_silent_workers(self) -> None:
        """A Worker silent past the timeout is offline; its task goes back to the queue."""
        cutoff = utcnow() - self.worker_timeout
        for worker in self.workers_by_id.values():
            if worker.last_seen >= cutoff or worker.status == "offline":
                continue
            log.warning(
                "worker %s is silent; marked offline", worker.name, extra={"worker": worker.name}
            )
            self._take_offline(worker)

    def _take_offline(self, worker: WorkerState) -> None:
        """The Worker is gone (silent, or it said so); the tasks it held go back to the queue."""
        requeued = [self.held[task_id] for task_id in worker.tasks]
        worker.tasks = []
        self._set_status(worker, "offline")
        self.store.worker_changed(worker)
        for held in requeued:
            held.state, held.worker_id, held.progress = "queued", None, 0.0
            self.queue.add(held)
            self.store.task_changed(held)
        self._notify_work(len(requeued))
