"""What the Manager's link to the Server reads from and gives to its service: the tasks it
wants and holds, their progress, its Workers, and what the Server answers (leases, revoked
tasks, hand-backs, blocklists, operators' wishes). `ManagerService` (service.py) is this and
its Workers' side; the link itself is upstream.py."""

from __future__ import annotations

import logging
import math
import time
from collections import deque

from flamenco import wire
from flamenco.config import ManagerSettings
from flamenco.core.matching import Requirements, unmet
from flamenco.manager.queue import TaskQueue
from flamenco.manager.store import HeldTask, ManagerStore, WorkerState

log = logging.getLogger("flamenco.manager")

RATE_WINDOW_S = 5.0  # how far back finished tasks count towards the task rate
LOOKAHEAD_S = 1.0  # tasks held ahead: about this long of the recent rate of finished tasks
AHEAD_PER_WORKER = 2  # ... but at most this many per working Worker


class ServerSide:
    """The Server's side of ManagerService (service.py), which provides these attributes and
    the methods below that only say what they do."""

    settings: ManagerSettings
    store: ManagerStore
    held: dict[str, HeldTask]
    queue: TaskQueue
    workers_by_id: dict[str, WorkerState]
    blocklist: dict[str, set[str]]  # job id -> Worker names, from the Server
    _working: set[str]  # ids of Workers in a WORKING_STATUSES status
    _idle: dict[str, float]  # Worker id -> waiting for work since
    _finished: deque[float]  # when recent tasks ended, for the task rate
    _next_seq: int

    def _forget(self, held: HeldTask) -> None:
        """Drop a held task (service.py)."""
        raise NotImplementedError

    def _notify_work(self, count: int = 1) -> None:
        """Wake up to `count` Workers waiting for a task (service.py)."""
        raise NotImplementedError

    def _want_more(self) -> None:
        """Ask the Server for tasks now if the site wants some (service.py)."""
        raise NotImplementedError

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
        # Not validated again: the Workers' numbers and texts were, when they arrived.
        return [
            wire.Progress.model_construct(
                task_id=h.task_id, progress=h.progress, activity=h.activity
            )
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
            commands=info.commands,
            platform=info.platform,
            cpu_count=info.cpu_count,
            memory_mb=info.memory_mb,
            **wire.WorkerStats.model_validate(w.stats).model_dump(),
            progress=task.progress if task else 0.0,
            activity=task.activity if task else "",
        )
