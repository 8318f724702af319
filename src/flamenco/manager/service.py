"""The Manager's logic: its Workers, the tasks it holds, and its cache of job files.

Everything is decided in memory; `ManagerStore` writes it behind to SQLite, and answers that
must survive a crash wait for that write (see store.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import math
import secrets
import time
from collections import OrderedDict, deque
from collections.abc import AsyncIterable
from datetime import timedelta
from pathlib import Path

from flamenco import wire
from flamenco.blob_cache import BoundedBlobStore
from flamenco.client import ApiError, AsyncApi, Unreachable
from flamenco.config import ManagerSettings
from flamenco.core.matching import Capabilities, Requirements, unmet
from flamenco.core.names import check_artifact_name, check_frame_file_name, quote_name
from flamenco.core.states import RELEASING_TASK_STATUSES
from flamenco.db import utcnow
from flamenco.errors import BadRequest, Conflict, NotFound, Unauthorized, Unavailable, writing
from flamenco.manager.join_secret import JoinSecret
from flamenco.manager.queue import TaskQueue
from flamenco.manager.store import HeldTask, ManagerStore, WorkerState
from flamenco.outbox import FrameItem, Outbox
from flamenco.security import new_token, token_hash

log = logging.getLogger("flamenco.manager")

SEEN_UPDATES = 100_000  # update ids remembered to drop replays (the Server drops them too)
RATE_WINDOW_S = 5.0  # how far back finished tasks count towards the task rate
LOOKAHEAD_S = 1.0  # tasks held ahead: about this long of the recent rate of finished tasks
AHEAD_PER_WORKER = 2  # ... but at most this many per working Worker


class ManagerService:
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
        self._waiters: deque[asyncio.Event] = deque()  # long polls waiting for work
        self._promised = 0  # waiting Workers woken for new tasks that have not looked yet
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

    async def worker_sync(self, worker: WorkerState, req: wire.WorkerSync) -> wire.WorkerSyncReply:
        """Updates carried along, a check-in, and (long-polled) the next task if it wants one."""
        applied = self.apply_worker_updates(worker, req.updates) if req.updates else []
        cancel = self._check_in(worker, req)
        assignment = None
        if req.want_task and not cancel and worker.wanted == "awake":
            assignment = await self._wait_for_assignment(worker, req)
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
        self, worker: WorkerState, req: wire.WorkerSync
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
                woken = await self._wait_for_work(remaining)
            return assignment
        finally:
            self._idle.pop(worker.id, None)

    def _check_in(self, worker: WorkerState, req: wire.WorkerSync) -> list[str]:
        """Record that the Worker is alive; return the tasks it must stop."""
        worker.last_seen = utcnow()
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
            if len(self.queue) <= self._promised:
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
        return wire.Assignment.model_construct(
            **{name: getattr(held.lease, name) for name in wire.Assignment.model_fields}
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
            upstream.append(update.model_copy(update={"worker": worker.name}))
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
        body: AsyncIterable[bytes],
    ) -> None:
        check_frame_file_name(filename)
        held = self._held_by(worker, task_id)
        if frame not in held.lease.frames:
            raise BadRequest(f"Frame {frame} is not one of the frames of task '{task_id}'.")
        with writing(f"Frame {frame} of task {task_id}"):
            digest = await self.blobs.put_stream(body, expected=sha256)
        self.outbox.add_frame(FrameItem(task_id, frame, digest, filename, job_id=held.job_id))
        self.link_wake.set()
        await self.outbox.saved()

    async def receive_artifact(
        self, worker: WorkerState, task_id: str, name: str, sha256: str, body: AsyncIterable[bytes]
    ) -> None:
        """Another output of a task (its preview video): queued for the Server like a frame."""
        check_artifact_name(name)
        held = self._held_by(worker, task_id)
        with writing(f"The file {quote_name(name)} of task {task_id}"):
            digest = await self.blobs.put_stream(body, expected=sha256)
        self.outbox.add_frame(FrameItem(task_id, 0, digest, name, "artifact", held.job_id))
        self.link_wake.set()
        await self.outbox.saved()

    # ---- job files ---------------------------------------------------------------------------

    async def blob_path(self, sha256: str) -> Path:
        """The cached blob, fetched from the Server once however many Workers ask at once."""
        path = self.blobs.path(sha256)
        if not path.is_file():
            lock = self._blob_locks.setdefault(sha256, asyncio.Lock())
            async with lock:
                if not path.is_file():
                    await self._download(sha256)
            self._blob_locks.pop(sha256, None)
        self.blobs.use(sha256)  # the last to go from the bounded cache
        return path

    def needed_blobs(self) -> dict[str, str]:
        """Blob -> the job and task that need it, which the bounded cache keeps: the files of
        every held task, and the frames and artifacts the outbox has still to send."""
        needed = self.outbox.pending_files()
        for held in self.held.values():
            for sha256 in held.lease.files.values():
                needed.setdefault(sha256, f"job {held.job_id} task {held.task_id}")
        return needed

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
        self.blob_download_bytes += self.blobs.path(sha256).stat().st_size

    # ---- the Server side ---------------------------------------------------------------------

    def take_worker_states(self, states: dict[str, str]) -> None:
        """Operators' wishes from the Server: which Workers sleep, wake or are disabled."""
        for worker in self.workers_by_id.values():
            wanted = states.get(worker.name)
            if wanted is not None and wanted != worker.wanted:
                worker.wanted = wanted
                self.store.worker_changed(worker)

    def take_blocklist(self, blocklist: dict[str, list[str]]) -> None:
        self.blocklist = {job_id: set(names) for job_id, names in blocklist.items()}

    def unrunnable(self) -> list[str]:
        """Queued tasks none of the working Workers may run (each kept off the job, or lacking
        what the task needs): handed back to the Server, so that another site runs them."""
        working = [self.workers_by_id[worker_id] for worker_id in self._working]

        def anyone_may(job_id: str, needs: Requirements) -> bool:
            blocked = self.blocklist.get(job_id, ())
            return any(
                w.name not in blocked and unmet(needs, w.capabilities) is None for w in working
            )

        return [held.task_id for held in self.queue.unwanted(anyone_may)]

    def handed_back(self, task_ids: list[str]) -> None:
        """The Server took these tasks back (see unrunnable): forget those still queued."""
        for task_id in task_ids:
            held = self.held.get(task_id)
            if held is None or held.state != "queued":
                continue
            log.info(
                "task %s handed back: no Worker here may run it",
                task_id,
                extra={"job": held.job_id, "task": task_id},
            )
            self._forget(held)
        if task_ids:
            self._want_more()

    def take_leases(self, leases: list[wire.Lease]) -> None:
        new = [lease for lease in leases if lease.task_id not in self.held]
        for lease in new:
            held = HeldTask.from_lease(lease, self._next_seq)
            self._next_seq += 1
            self.held[held.task_id] = held
            self.queue.add(held)
            self.store.task_changed(held)
        if new:
            self._notify_work(len(new))

    def revoke(self, task_ids: list[str]) -> None:
        for task_id in task_ids:
            held = self.held.get(task_id)
            if held is None:
                continue
            worker = self.workers_by_id.get(held.worker_id or "")
            if worker is not None:
                worker.cancel = [*worker.cancel, held.task_id]
            log.info(
                "task %s revoked by the Server",
                held.task_id,
                extra={"job": held.job_id, "task": held.task_id},
            )
            self._forget(held)

    async def _wait_for_work(self, timeout: float) -> bool:
        """Wait until woken for new work (True) or until the timeout (False)."""
        waiter = asyncio.Event()
        self._waiters.append(waiter)
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(waiter.wait(), timeout)
        finally:
            if waiter.is_set():
                self._promised -= 1  # this one looks now (or is gone)
            else:
                self._waiters.remove(waiter)
        return waiter.is_set()

    def _notify_work(self, count: int = 1) -> None:
        """Wake as many waiting Workers as there are new tasks, not all of them, longest
        waiting first. Until they have looked, that many queued tasks are theirs: a request
        that arrives meanwhile does not take them (else, while tasks are scarce, newcomers
        would win every time and some Workers would wait out their whole long poll).

        A woken Worker that cannot take the task passes the turn on (see worker_sync).
        """
        for _ in range(min(count, len(self._waiters))):
            self._waiters.popleft().set()
            self._promised += 1

    def _want_more(self) -> None:
        if self.want() > 0:
            self.sync_wake.set()

    def workers_waiting(self) -> bool:
        return bool(self._idle)

    def want(self) -> int:
        """How many more tasks to lease: one per idle Worker, plus some ahead while any works.

        Ahead: the configured prefetch, or about LOOKAHEAD_S of the recent rate of finished
        tasks when that is more. Short tasks finish faster than a sync with the Server comes
        back, so the queue must outlast about two round trips; at most AHEAD_PER_WORKER per
        working Worker, so that a busy site does not hoard tasks that another site's idle
        Workers could run (long tasks never reach that bound: the rate stays low).
        """
        working = len(self._working)
        ahead = 0
        if working:
            by_rate = math.ceil(self.task_rate() * LOOKAHEAD_S)
            ahead = max(self.settings.prefetch, min(AHEAD_PER_WORKER * working, by_rate))
        return max(0, len(self._idle) + ahead - len(self.queue))

    def task_rate(self) -> float:
        """Tasks finished per second over the last RATE_WINDOW_S."""
        cutoff = time.monotonic() - RATE_WINDOW_S
        while self._finished and self._finished[0] < cutoff:
            self._finished.popleft()
        return len(self._finished) / RATE_WINDOW_S

    def held_ids(self) -> list[str]:
        return list(self.held)

    def progress(self) -> list[wire.Progress]:
        return [
            wire.Progress(task_id=h.task_id, progress=h.progress, activity=h.activity)
            for h in self.held.values()
            if h.state == "assigned"
        ]

    def roster(self) -> list[tuple[str, str]]:
        """What the Server must hear of at once about the Workers: who they are and their
        status. Their tasks, load and progress change many times a second on a busy site and
        go up once an interval."""
        return sorted((w.name, w.status) for w in self.workers_by_id.values())

    def workers(self) -> list[wire.WorkerSummary]:
        return [self._summary(w) for w in self.workers_by_id.values()]

    def _summary(self, w: WorkerState) -> wire.WorkerSummary:
        info = w.info_model
        task = self.held.get(w.current_task or "")
        return wire.WorkerSummary(
            name=w.name,
            status=w.status,
            task_id=w.current_task,
            last_seen=w.last_seen,
            tags=info.tags,
            gpus=info.gpus,
            blender_version=info.blender_version,
            blender_versions=info.blender_versions,
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
        for worker in self.workers_by_id.values():
            if worker.last_seen >= cutoff or worker.status == "offline":
                continue
            log.warning(
                "worker %s is silent; marked offline", worker.name, extra={"worker": worker.name}
            )
            requeued = [self.held[task_id] for task_id in worker.tasks]
            worker.tasks = []
            self._set_status(worker, "offline")
            self.store.worker_changed(worker)
            for held in requeued:
                held.state, held.worker_id, held.progress = "queued", None, 0.0
                self.queue.add(held)
                self.store.task_changed(held)
            self._notify_work(len(requeued))
