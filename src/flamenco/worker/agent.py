"""The Worker: asks its Manager for tasks, runs each with the command its type names,
reports back.

Two loops run side by side: the main loop syncs with the Manager (heartbeat, progress, new
work, cancels) and the delivery loop empties the outbox of frames and updates. While the
Manager is unreachable the current task goes on and its results wait in the outbox. A task
runs as a command (`flamenco.commands`, found through entry points) that the Worker lends a
reporter (`reporting.py`) and the job's warm Blender (`lent_blender.py`, `blender_pool.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from pathlib import Path
from typing import Any

from flamenco import wire
from flamenco.aio import wait_any, wait_quietly
from flamenco.blob_cache import BoundedBlobStore
from flamenco.blobs import safe_join
from flamenco.client import ApiError, AsyncApi, Unreachable
from flamenco.commands import CommandTask
from flamenco.commands.registry import advertised, command_for, installed_commands
from flamenco.config import WorkerSettings
from flamenco.core.states import TaskStatus
from flamenco.outbox import Outbox
from flamenco.worker.blender import BlenderInstall, find_blenders
from flamenco.worker.blender_pool import BlenderPool
from flamenco.worker.cleanup import JobFolders, needed_blobs, sweep_temp_folders
from flamenco.worker.delivery import Delivery
from flamenco.worker.gpu_warmup import warm_up_gpus
from flamenco.worker.gpus import find_gpus, gpu_environment, refused_device, without_backend
from flamenco.worker.identity import register, sign_off, until_registered
from flamenco.worker.lent_blender import LentBlender
from flamenco.worker.machine import StatsSampler, describe_machine
from flamenco.worker.reporting import TaskReporter, TaskRun
from flamenco.worker.task_failure import (
    FORESEEN_FAILURES,
    failure_fault,
    failure_sentence,
    versions,
)

log = logging.getLogger("flamenco.worker")


IDLE_WAIT_S = 10.0
MAX_BACKOFF_S = 10.0
FINAL_DELIVERY_S = 5.0
# Reserve the next task when the running render should end within this long, so that
# Blender goes on at once; short, so that no task waits long on a busy Worker.
RESERVE_AHEAD_S = 0.5
RESERVE_WAIT_S = 1.0


class WorkerAgent:
    def __init__(self, settings: WorkerSettings, install: BlenderInstall | None = None) -> None:
        self.settings = settings
        self.data = settings.data_dir
        self.data.mkdir(parents=True, exist_ok=True)
        # Every Blender it offers, oldest first; each job renders with the one closest to
        # its file's version (core.matching.choose_blender), and the newest stands by.
        self.installs = [install] if install else find_blenders(settings.blender)
        self.install = self.installs[-1]
        log.info(
            "offering Blender %s",
            ", ".join(f"{i.version} ({i.kind} {i.where})" for i in self.installs),
            extra={"worker": settings.name},
        )
        self.gpu_pin = settings.gpu if settings.gpu >= 0 else None
        self.blender_env = gpu_environment(self.data, self.gpu_pin)
        self.commands = installed_commands()
        log.info("commands: %s", ", ".join(sorted(self.commands)), extra={"worker": settings.name})
        self.info = describe_machine(
            blender_versions=[i.version for i in self.installs],
            tags=[t.strip() for t in settings.tags.split(",") if t.strip()],
            gpus=[],  # asked of Cycles as `serve` starts (gpus.find_gpus)
            commands=advertised(self.commands),
        )
        self.info_sent = False
        self.stats = StatsSampler()
        self.status = "awake"
        # Bounded: least recently used blobs go, never those of its tasks or its outbox.
        self.blobs = BoundedBlobStore(
            self.data / "cache",
            settings.cache_size,
            self._needed_blobs,
            owner=f"Worker {settings.name}",
        )
        self.job_folders = JobFolders(self.data / "jobs", settings.job_folder_idle_s, settings.name)
        self.blender_temp = self.data / "blender-tmp"  # each Blender child's own temp folder
        sweep_temp_folders(self.blender_temp)
        self.pool = BlenderPool(
            self.installs,
            user_resources=self.data / "blender-user",
            env=self.blender_env,
            temp_root=self.blender_temp,
            standby=settings.standby_blender,
            worker_name=settings.name,
        )
        self.outbox = Outbox(self.data / "outbox.sqlite")
        self.api = AsyncApi(
            settings.manager,
            ca_bundle=settings.ca_bundle,
            transfer_stall_s=settings.transfer_stall_s,
        )
        self.delivery = Delivery(self.api, self.outbox, self.blobs)
        self.task_ended = asyncio.Event()
        self.run: TaskRun | None = None
        self.runner: asyncio.Task[None] | None = None
        self.next: wire.Assignment | None = None  # reserved while the current task runs
        self.frame_s: tuple[str, float] | None = None  # job id, seconds of its last frame

    # ---- main loops --------------------------------------------------------------------------

    async def serve(self, stop: asyncio.Event) -> None:
        try:
            gpus = await find_gpus(self.pool, self.gpu_pin)
            self.info = self.info.model_copy(update={"gpus": gpus})
            await until_registered(self.api, self.settings, self.info, stop)
        except BaseException:
            await self.pool.shutdown()  # the Blender on standby that named the GPUs
            raise
        warmup = None
        if self.info.gpus and self.settings.gpu_warmup:
            warmup = asyncio.create_task(self._warm_up_gpus(self.info.gpus[0].backends))
        delivery = asyncio.create_task(self.delivery.loop(stop))
        syncing = asyncio.create_task(self._sync_loop(stop))
        try:
            # A long poll may be in flight when asked to stop: do not wait for it to return.
            await asyncio.wait(
                {syncing, asyncio.ensure_future(stop.wait())}, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            syncing.cancel()
            await wait_quietly(syncing)
            if warmup is not None:
                warmup.cancel()
                await wait_quietly(warmup)
            await self._shutdown()
            await wait_quietly(delivery)
            # One last delivery, so that what happened before the stop is not held back; then
            # it signs off, so that the farm shows it offline now, not once found silent.
            with contextlib.suppress(Unreachable, ApiError, TimeoutError):
                await asyncio.wait_for(self.delivery.deliver(), FINAL_DELIVERY_S)
                await asyncio.wait_for(sign_off(self.api), FINAL_DELIVERY_S)
            await self.api.close()
            self.outbox.close()

    async def _sync_loop(self, stop: asyncio.Event) -> None:
        delay = 1.0
        while not stop.is_set():
            long_polled = False
            if self.runner is None and self.pool.blender is None:
                self._keep_standby()  # idle without a warm Blender: have one ready for a job
            try:
                long_polled = await self._sync_once()
                delay = 1.0
            except Unreachable as exc:
                log.warning("Manager unreachable: %s", exc)
                delay = min(delay * 2, MAX_BACKOFF_S)
            except ApiError as exc:
                if exc.status == 401:
                    await self._reregister()
                else:
                    log.error("Manager refused the sync: %s", exc.message)
            if self.runner is None:
                await self.pool.retire_if_idle(self.settings.warm_idle_s)
            await self._stop_if_hung()
            self.job_folders.sweep(self._busy_jobs())
            if self.runner is None and long_polled:
                self._keep_standby()  # a long poll brought nothing: the machine is idle
            if not long_polled:  # a long poll already waited; anything else waits here
                await wait_any(stop, self.task_ended, timeout=self._until_reserve(delay))
                self.task_ended.clear()

    async def _reregister(self) -> None:
        with contextlib.suppress(Unreachable, ApiError):
            await register(self.api, self.settings, self.info, force=True)

    def _reserve_in(self) -> float | None:
        """Seconds until the next task should be reserved (<= 0: now); None: not while this
        render runs (nothing runs, one is reserved already, or nothing to judge by)."""
        if self.run is None or self.next is not None or self.status != "awake":
            return None
        left = self.run.seconds_left()
        return None if left is None else left - RESERVE_AHEAD_S

    def _should_reserve(self) -> bool:
        reserve_in = self._reserve_in()
        return reserve_in is not None and reserve_in <= 0

    def _until_reserve(self, delay: float) -> float:
        """How long the sync loop may sleep: `delay`, or less to reserve the next task in time."""
        reserve_in = self._reserve_in()
        return delay if reserve_in is None else min(delay, max(0.0, reserve_in))

    async def _sync_once(self) -> bool:
        """One sync with the Manager; True when it was a long poll for work."""
        idle = self.runner is None and self.status == "awake"
        asking = idle or self._should_reserve()
        carried: tuple[list[int], list[wire.TaskUpdate]] = ([], [])
        if asking:
            # The Manager must hear how the last task ended before it hands out the next one
            # (else it would give that one again): its frames go first, its last updates
            # ride along with this request.
            await self.delivery.deliver(keep_updates=True)
            carried = self.outbox.pending_updates()
        req = wire.WorkerSync(
            updates=carried[1],
            want_task=asking,
            # Reserving: wait a little for a task rather than ask again and again.
            wait_s=IDLE_WAIT_S if idle else RESERVE_WAIT_S,
            warm_job_id=self.pool.job_id,
            progress=self.run.progress if self.run else None,
            status=self.status,
            running_task_id=self.run.a.task_id if self.run else None,
            next_task_id=self.next.task_id if self.next else None,
            info=None if self.info_sent else self.info,
            stats=self.stats.sample(),
        )
        try:
            reply = await self.api.call(
                "POST", "/api/v1/worker/sync", wire.WorkerSyncReply, req, timeout=IDLE_WAIT_S + 20
            )
        except ApiError as exc:
            if carried[0] and not exc.transient:
                # A carried update may be what the Manager refuses: they go on their own, where
                # one refused for good is set aside, so the next sync does not carry it again.
                await self.delivery.deliver()
            raise
        self.info_sent = True
        self.outbox.remove(carried[0])
        self._follow_wanted_state(reply.state)
        if self.next is not None and self.next.task_id in reply.cancel:
            self.next = None  # first, so that a canceled running task does not start it
        for task_id in reply.cancel:
            await self._cancel(task_id)
        if reply.assignment is not None:
            self._take(reply.assignment)
        return idle

    def _take(self, assignment: wire.Assignment) -> None:
        if self.runner is None:
            self._start(assignment)
        elif self.next is None and assignment.task_id != (self.run and self.run.a.task_id):
            self.next = assignment

    def _start(self, assignment: wire.Assignment) -> None:
        self.run = TaskRun(assignment)
        if self.frame_s is not None and self.frame_s[0] == assignment.job_id:
            self.run.frame_s = self.frame_s[1]
        self.runner = asyncio.create_task(self._run_task(self.run))
        self.runner.add_done_callback(self._task_finished)

    def _follow_wanted_state(self, wanted: str) -> None:
        """Asleep or disabled: finish the current task, then take no more until woken."""
        if self.status == "compiling-gpu-kernels" or wanted == self.status:
            return
        log.info("now %s, as asked", wanted, extra={"worker": self.settings.name})
        self.status = wanted

    def _task_finished(self, _: asyncio.Task[None]) -> None:
        if self.run is not None and self.run.frame_s is not None:
            self.frame_s = (self.run.a.job_id, self.run.frame_s)
        self.runner, self.run = None, None
        self.pool.idle_since = time.monotonic()
        reserved, self.next = self.next, None
        if reserved is not None and self.status == "awake":
            self._start(reserved)  # Blender goes on at once; the last task's news follows
            self.delivery.wake.set()
        elif reserved is not None:
            self._hand_back(reserved)
        self.task_ended.set()

    def _hand_back(self, assignment: wire.Assignment) -> None:
        """A reserved task this Worker will not run goes back to the Manager's queue."""
        self._report(TaskRun(assignment), status=TaskStatus.QUEUED, activity="handed back")

    async def _cancel(self, task_id: str) -> None:
        if self.next is not None and self.next.task_id == task_id:
            self.next = None
            return
        if self.run is None or self.run.a.task_id != task_id or self.runner is None:
            return
        log.info("task %s canceled by the Manager", task_id, extra=self._ctx(self.run))
        self.runner.cancel()
        await wait_quietly(self.runner)

    # ---- running one task --------------------------------------------------------------------

    def _ctx(self, run: TaskRun) -> dict[str, Any]:
        return {"job": run.a.job_id, "task": run.a.task_id, "worker": self.settings.name}

    def _report(self, run: TaskRun, wake: bool = True, **fields: Any) -> None:
        """Queue an update; `wake=False` for a task's last ones, which ride with the next sync."""
        update = wire.TaskUpdate(
            update_id=wire.new_update_id(),
            task_id=run.a.task_id,
            worker=self.settings.name,
            **fields,
        )
        self.outbox.add_update(update)
        if wake:
            self.delivery.wake.set()

    async def _run_task(self, run: TaskRun) -> None:
        a = run.a
        log.info(
            "task %s (%s) of job %s started", a.task_id, a.name, a.job_id, extra=self._ctx(run)
        )
        self._report(run, status=TaskStatus.ACTIVE, activity="fetching job files", progress=0.0)
        reporter: TaskReporter | None = None
        try:
            job_dir = await self._fetch_files(a)
            reporter = self._reporter(run, job_dir)
            await self._run_command(run, job_dir, reporter)
        except asyncio.CancelledError:
            if reporter is not None:
                reporter.flush_log()
            raise
        except Exception as exc:
            self._failed(run, exc, reporter)
            return
        reporter.flush_log(wake=False)
        self._report(run, wake=False, status=TaskStatus.COMPLETED, progress=1.0, activity="done")
        log.info("task %s completed", a.task_id, extra=self._ctx(run))

    def _reporter(self, run: TaskRun, job_dir: Path) -> TaskReporter:
        return TaskReporter(
            run, job_dir, self.blobs, self.outbox, self._report, self.delivery.wake.set
        )

    async def _run_command(self, run: TaskRun, job_dir: Path, reporter: TaskReporter) -> None:
        """Run the task with the command its type names, lending it the job's Blender."""
        a = run.a
        command = command_for(a.type, self.commands)
        blender = LentBlender(
            self.pool,
            run,
            reporter,
            job_dir,
            self._report,
            lambda message: self._drop_refused_device(message, run),
        )
        task = CommandTask(
            job_id=a.job_id,
            task_id=a.task_id,
            name=a.name,
            parameters=a.command,
            frames=list(a.frames),
            job_dir=job_dir,
            files=list(a.files),
            out_dir=self.data / "jobs" / a.job_id / "out" / a.task_id,
            blender=blender,
        )
        await command.run(task, reporter)

    def _failed(self, run: TaskRun, exc: Exception, reporter: TaskReporter | None) -> None:
        """Report the task failed with one sentence, and whose fault that is."""
        a = run.a
        message = failure_sentence(exc, self.settings.hung_timeout_s if run.hung else None)
        if not isinstance(exc, FORESEEN_FAILURES):
            log.exception("task %s: its command raised", a.task_id, extra=self._ctx(run))
        blend = self.data / "jobs" / a.job_id / "files" / str(a.command.get("blend", ""))
        fault = failure_fault(
            exc, message, run.hung, lambda: versions(blend, self.pool.install_for)
        )
        log.error("task %s failed (%s): %s", a.task_id, fault, message, extra=self._ctx(run))
        if reporter is not None:
            reporter.flush_log(wake=False)
        self._report(
            run, wake=False, status=TaskStatus.FAILED, error=message, fault=fault, activity="failed"
        )

    def _drop_refused_device(self, message: str, run: TaskRun) -> None:
        """A GPU backend Blender refused leaves what this Worker offers; the next sync tells
        the Manager, so that the job's tasks go to a Worker that has it, or wait saying so."""
        device = refused_device(message)
        gpus = without_backend(self.info.gpus, device) if device else self.info.gpus
        if gpus == self.info.gpus:
            return
        log.warning("Blender refused %s; no longer offering it", device, extra=self._ctx(run))
        self.info = self.info.model_copy(update={"gpus": gpus})
        self.info_sent = False

    async def _warm_up_gpus(self, backends: list[str]) -> None:
        """Compile the GPU kernels now, so that no job's first task waits minutes for them."""
        self.status = "compiling-gpu-kernels"
        try:
            await warm_up_gpus(self.pool, backends, self.data / "gpu-warmup")
        finally:
            self.status = "awake"

    async def _stop_if_hung(self) -> None:
        """A render with no output at all past the timeout is stopped, and so fails."""
        run, blender = self.run, self.pool.blender
        if run is None or blender is None or run.hung or run.may_be_silent:
            return
        silent = time.monotonic() - run.last_sign_of_life
        if silent > self.settings.hung_timeout_s:
            log.warning(
                "task %s: Blender silent for %.0f s, stopping it",
                run.a.task_id,
                silent,
                extra=self._ctx(run),
            )
            run.hung = True
            await blender.terminate()

    async def _fetch_files(self, a: wire.Assignment) -> Path:
        job_dir = self.data / "jobs" / a.job_id / "files"
        self.job_folders.used(a.job_id)
        for relpath, sha256 in a.files.items():
            if not self.blobs.has(sha256):
                await self.api.download_blob(sha256, self.blobs)
            self.blobs.use(sha256)
            self.blobs.link_to(sha256, safe_join(job_dir, relpath))
        return job_dir

    def _needed_blobs(self) -> dict[str, str]:
        """What the cache must keep: the files of the running and the reserved task, and
        what the outbox has still to send."""
        return needed_blobs((self.run.a if self.run else None, self.next), self.outbox)

    def _busy_jobs(self) -> list[str | None]:
        """Jobs whose folder must stay: a task of it runs or is reserved, or its Blender is warm."""
        return [
            self.run.a.job_id if self.run else None,
            self.next and self.next.job_id,
            self.pool.job_id,
        ]

    def _keep_standby(self) -> None:
        """A Blender on standby for the next job, while this Worker is awake."""
        if self.status == "awake":
            self.pool.keep_standby()

    # ---- Blender lifetime --------------------------------------------------------------------

    async def _shutdown(self) -> None:
        if self.next is not None:
            self._hand_back(self.next)
            self.next = None
        if self.runner is not None and self.run is not None:
            # Hand the task back at once rather than let the Manager wait for us to go silent.
            self._report(self.run, status=TaskStatus.QUEUED, activity="worker stopped")
            self.runner.cancel()
            await wait_quietly(self.runner)
        await self.pool.shutdown()
