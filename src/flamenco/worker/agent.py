"""The Worker: asks its Manager for tasks, renders them in a warm Blender, reports back.

Two loops run side by side: the main loop syncs with the Manager (heartbeat, progress, new
work, cancels) and the delivery loop empties the outbox of frames and updates. While the
Manager is unreachable the current render goes on and its results wait in the outbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from flamenco import wire
from flamenco.aio import wait_any, wait_quietly
from flamenco.blendfile import blend_version, blend_version_text
from flamenco.blob_cache import BoundedBlobStore
from flamenco.blobs import safe_join
from flamenco.client import ApiError, AsyncApi, TlsFailure, Unreachable, api_path
from flamenco.config import WorkerSettings
from flamenco.core.faults import Fault, classify_failure, disk_full_sentence
from flamenco.core.matching import choose_blender, parse_version
from flamenco.core.names import UnsafePath, check_frame_file_name
from flamenco.core.states import TaskStatus
from flamenco.core.tiles import TileError, tile_border
from flamenco.demo.scene import DemoSceneError, build_demo_scene
from flamenco.frame_check import BadFrame, FrameExpectation, check_frame
from flamenco.outbox import FrameItem, Outbox
from flamenco.procs import private_file
from flamenco.worker.blender import (
    BlenderFailed,
    BlenderInstall,
    BlenderTerminated,
    EventCallback,
    WarmBlender,
    find_blenders,
)
from flamenco.worker.cleanup import JobFolders, needed_blobs, sweep_temp_folders
from flamenco.worker.gpus import detect_gpus, gpu_environment, refused_device, without_backend
from flamenco.worker.machine import StatsSampler, describe_machine
from flamenco.worker.video import EncodingFailed, PreviewVideo

log = logging.getLogger("flamenco.worker")


class TaskTypeUnknown(Exception):
    """The Manager handed out a task this Worker has no runner for."""


IDLE_WAIT_S = 10.0
LOG_FLUSH_S = 1.0
LOG_FLUSH_LINES = 100
MAX_BACKOFF_S = 10.0
FINAL_DELIVERY_S = 5.0
# Reserve the next task when the running render should end within this long, so that
# Blender goes on at once; short, so that no task waits long on a busy Worker.
RESERVE_AHEAD_S = 0.5
RESERVE_WAIT_S = 1.0


class TaskRun:
    """What the Worker knows about the task it is running."""

    def __init__(self, assignment: wire.Assignment) -> None:
        self.a = assignment
        self.last_sign_of_life = time.monotonic()
        self.hung = False
        self.frames_done = 0
        self.progress = wire.Progress(task_id=assignment.task_id, progress=0.0, activity="")
        self.log_lines: list[str] = []
        self.last_log_flush = time.monotonic()
        self.frame_started: float | None = None  # when Blender began the current frame
        self.frame_s: float | None = None  # how long a frame of this job took here

    def seconds_left(self) -> float | None:
        """The render's expected remaining time; None while there is nothing to go by."""
        if self.frame_started is None or self.frame_s is None:
            return None
        frames_left = len(self.a.frames) - self.frames_done
        return frames_left * self.frame_s - (time.monotonic() - self.frame_started)

    def set_progress(self, frame_fraction: float, activity: str) -> None:
        total = max(len(self.a.frames), 1)
        value = min((self.frames_done + frame_fraction) / total, 1.0)
        self.progress = wire.Progress(task_id=self.a.task_id, progress=value, activity=activity)


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
        self.info = describe_machine(
            blender_versions=[i.version for i in self.installs],
            tags=[t.strip() for t in settings.tags.split(",") if t.strip()],
            gpus=detect_gpus(
                self.install, self.gpu_pin, self.blender_env, self.data / "blender-user"
            ),
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
        self.outbox = Outbox(self.data / "outbox.sqlite")
        self.api = AsyncApi(
            settings.manager,
            ca_bundle=settings.ca_bundle,
            transfer_stall_s=settings.transfer_stall_s,
        )
        self.deliver_wake = asyncio.Event()
        self.task_ended = asyncio.Event()
        self.delivering = asyncio.Lock()
        self.blender: WarmBlender | None = None
        self.blender_job: str | None = None
        self.standby: WarmBlender | None = None  # bpy loaded, no file yet: the next job's
        self.standby_starting: asyncio.Task[bool] | None = None
        self.standby_failed = False
        self.blender_idle_since = time.monotonic()
        self.run: TaskRun | None = None
        self.runner: asyncio.Task[None] | None = None
        self.next: wire.Assignment | None = None  # reserved while the current task runs
        self.frame_s: tuple[str, float] | None = None  # job id, seconds of its last frame
        self.task_types: dict[str, Callable[[TaskRun, Path], Awaitable[None]]] = {
            "blender": self._render,
            "ffmpeg": PreviewVideo(self),
        }

    # ---- identity ----------------------------------------------------------------------------

    @property
    def _identity_file(self) -> Path:
        return self.data / "worker.json"

    async def register(self, force: bool = False) -> None:
        saved = json.loads(self._identity_file.read_text()) if self._identity_file.exists() else {}
        if not force and saved.get("manager") == self.settings.manager and saved.get("token"):
            self.api.set_token(saved["token"])
            return
        if saved.get("token"):  # lets the Manager tell this Worker from another of its name
            self.api.set_token(saved["token"])
        reg = wire.WorkerRegistration(
            secret=self.settings.secret, name=self.settings.name, **self.info.model_dump()
        )
        done = await self.api.call("POST", "/api/v1/workers/register", wire.WorkerRegistered, reg)
        self._identity_file.write_text(
            json.dumps(
                {"manager": self.settings.manager, "worker_id": done.worker_id, "token": done.token}
            )
        )
        private_file(self._identity_file)
        self.api.set_token(done.token)
        log.info(
            "registered with %s as %s",
            self.settings.manager,
            done.worker_id,
            extra={"worker": self.settings.name},
        )

    # ---- main loops --------------------------------------------------------------------------

    async def serve(self, stop: asyncio.Event) -> None:
        await self._until_registered(stop)
        warmup = None
        if self.info.gpus and self.settings.gpu_warmup:
            warmup = asyncio.create_task(self._warm_up_gpus())
        delivery = asyncio.create_task(self._deliver_loop(stop))
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
            # One last delivery, so that what happened before the stop is not held back.
            with contextlib.suppress(Unreachable, ApiError, TimeoutError):
                await asyncio.wait_for(self._deliver(), FINAL_DELIVERY_S)
            await self.api.close()
            self.outbox.close()

    async def _until_registered(self, stop: asyncio.Event) -> None:
        delay = 1.0
        while not stop.is_set():
            try:
                await self.register()
                return
            except TlsFailure as exc:
                # An untrusted certificate, or http:// to an HTTPS Manager: waiting mends
                # neither, so the Worker stops and says why instead of retrying unseen.
                log.error("%s", exc, extra={"worker": self.settings.name})
                raise
            except Unreachable as exc:
                log.warning("Manager unreachable, retrying: %s", exc)
            await wait_any(stop, timeout=delay)
            delay = min(delay * 2, MAX_BACKOFF_S)

    async def _sync_loop(self, stop: asyncio.Event) -> None:
        delay = 1.0
        while not stop.is_set():
            long_polled = False
            if self.runner is None and self.blender is None:
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
            await self._retire_idle_blender()
            await self._stop_if_hung()
            self.job_folders.sweep(self._busy_jobs())
            if self.runner is None and long_polled:
                self._keep_standby()  # a long poll brought nothing: the machine is idle
            if not long_polled:  # a long poll already waited; anything else waits here
                await wait_any(stop, self.task_ended, timeout=self._until_reserve(delay))
                self.task_ended.clear()

    async def _reregister(self) -> None:
        with contextlib.suppress(Unreachable, ApiError):
            await self.register(force=True)

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
            async with self.delivering:
                await self.outbox.flush(self._send_updates, self._send_frame, keep_updates=True)
            carried = self.outbox.pending_updates()
        req = wire.WorkerSync(
            updates=carried[1],
            want_task=asking,
            # Reserving: wait a little for a task rather than ask again and again.
            wait_s=IDLE_WAIT_S if idle else RESERVE_WAIT_S,
            warm_job_id=self.blender_job,
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
                await self._deliver()
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
        self.runner, self.run = None, None
        self.blender_idle_since = time.monotonic()
        reserved, self.next = self.next, None
        if reserved is not None and self.status == "awake":
            self._start(reserved)  # Blender goes on at once; the last task's news follows
            self.deliver_wake.set()
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

    async def _deliver_loop(self, stop: asyncio.Event) -> None:
        delay = 1.0
        while not stop.is_set():
            self.deliver_wake.clear()
            try:
                await self._deliver()
                delay = 1.0
            except (Unreachable, ApiError) as exc:
                log.warning("delivery to the Manager failed, will retry: %s", exc)
                delay = min(delay * 2, MAX_BACKOFF_S)
            await wait_any(stop, self.deliver_wake, timeout=delay)

    async def _deliver(self) -> None:
        async with self.delivering:
            await self.outbox.flush(self._send_updates, self._send_frame)

    async def _send_updates(self, updates: list[wire.TaskUpdate]) -> None:
        await self.api.call(
            "POST", "/api/v1/worker/updates", wire.UpdatesApplied, wire.UpdateBatch(updates=updates)
        )

    async def _send_frame(self, item: FrameItem) -> None:
        if item.kind == "artifact":
            await self.api.upload_file(
                api_path("worker", "tasks", item.task_id, "artifacts", item.filename),
                self.blobs.path(item.sha256),
                item.sha256,
            )
            return
        await self.api.upload_file(
            f"/api/v1/worker/tasks/{item.task_id}/frames/{item.frame}",
            self.blobs.path(item.sha256),
            item.sha256,
            params={"filename": item.filename},
        )

    # ---- running one task --------------------------------------------------------------------

    def _ctx(self, run: TaskRun) -> dict[str, Any]:
        return {"job": run.a.job_id, "task": run.a.task_id, "worker": self.settings.name}

    def _report(self, run: TaskRun, wake: bool = True, **fields: Any) -> None:
        """Queue an update; `wake=False` for a task's last ones, which ride with the next sync."""
        update = wire.TaskUpdate(
            update_id=uuid.uuid4().hex, task_id=run.a.task_id, worker=self.settings.name, **fields
        )
        self.outbox.add_update(update)
        if wake:
            self.deliver_wake.set()

    async def _run_task(self, run: TaskRun) -> None:
        a = run.a
        log.info(
            "task %s (%s) of job %s started", a.task_id, a.name, a.job_id, extra=self._ctx(run)
        )
        self._report(run, status=TaskStatus.ACTIVE, activity="fetching job files", progress=0.0)
        try:
            job_dir = await self._fetch_files(a)
            runner = self.task_types.get(a.type)
            if runner is None:
                raise TaskTypeUnknown(f"This Worker cannot run tasks of type '{a.type}'.")
            await runner(run, job_dir)
        except asyncio.CancelledError:
            self._flush_log(run)
            raise
        except (
            BlenderFailed,
            EncodingFailed,
            ApiError,
            Unreachable,
            OSError,
            TaskTypeUnknown,
            UnsafePath,
            BadFrame,
        ) as exc:
            message = getattr(exc, "message", None) or str(exc)
            if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
                message = disk_full_sentence(exc.filename)
            if run.hung:
                message = (
                    f"Blender showed no sign of life for {self.settings.hung_timeout_s:.0f}"
                    " s and was stopped."
                )
            fault = self._fault(run, exc, message)
            log.error("task %s failed (%s): %s", a.task_id, fault, message, extra=self._ctx(run))
            self._flush_log(run, wake=False)
            self._report(
                run,
                wake=False,
                status=TaskStatus.FAILED,
                error=message,
                fault=fault,
                activity="failed",
            )
            return
        self._flush_log(run, wake=False)
        self._report(run, wake=False, status=TaskStatus.COMPLETED, progress=1.0, activity="done")
        log.info("task %s completed", a.task_id, extra=self._ctx(run))

    def _fault(self, run: TaskRun, exc: Exception, message: str) -> Fault:
        """Whose fault the failure is (flamenco.core.faults): only what Blender said about
        the job's file can be the file's; a hung render, a fetch or an OSError is ours. A bad
        frame is the machine's, unless it is a blank one (the scene's)."""
        if isinstance(exc, BadFrame):
            return classify_failure(message)
        if run.hung or not isinstance(exc, BlenderFailed) or isinstance(exc, BlenderTerminated):
            return Fault.MACHINE
        blend = self.data / "jobs" / run.a.job_id / "files" / str(run.a.command.get("blend", ""))
        try:
            ours = parse_version(self._install_for(blend).version)
        except ValueError:
            ours = None
        return classify_failure(message, blend_version(blend), ours)

    async def _render(self, run: TaskRun, job_dir: Path) -> None:
        a = run.a
        on_event = functools.partial(self._on_blender_event, run)
        try:
            blender = await self._warm_blender(a, job_dir, on_event)
        except BlenderFailed as exc:
            self._drop_refused_device(str(exc), run)
            raise
        run.log_lines.append(
            f"Flamenco: rendering with Blender {blender.install.version} ({blender.install.where})"
        )
        self._report(run, activity=f"rendering {a.name}", blender_pid=blender.pid)
        run.frame_started = time.monotonic()
        await blender.render(
            a.frames,
            self.data / "jobs" / a.job_id / "out" / a.task_id,
            output_pattern=a.command.get("output_pattern", "frame_######"),
            output_format=a.command.get("output_format", "SCENE"),
            on_event=on_event,
            persistent_data=bool(a.command.get("persistent_data", True)),
            border=self._tile_border(a.command, blender),
        )

    @staticmethod
    def _tile_border(
        command: dict[str, Any], blender: WarmBlender
    ) -> tuple[float, float, float, float] | None:
        """The region of a tile task, from the frame size its Blender reports."""
        resolution = blender.ready.resolution if blender.ready else (0, 0)
        try:
            return tile_border(command, resolution)
        except TileError as exc:
            raise BlenderFailed(str(exc)) from None

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

    async def _warm_up_gpus(self) -> None:
        """Compile the GPU kernels now, so that no job's first task waits minutes for them."""
        self.status = "compiling-gpu-kernels"
        folder = self.data / "gpu-warmup"
        try:
            scene = await asyncio.to_thread(
                build_demo_scene,
                self.install,
                folder / "warmup.blend",
                frames=1,
                resolution=(32, 32),
                samples=1,
                user_resources=self.data / "blender-user",
            )
            for backend in self.info.gpus[0].backends:
                started = time.monotonic()
                async with WarmBlender(
                    self.install,
                    scene,
                    device=backend,
                    env=self.blender_env,
                    user_resources=self.data / "blender-user",
                    temp_root=self.blender_temp,
                ) as blender:
                    await blender.render([1], folder / backend.lower())
                log.info(
                    "GPU kernels for %s ready after %.1f s",
                    backend,
                    time.monotonic() - started,
                    extra={"worker": self.settings.name},
                )
        except (BlenderFailed, DemoSceneError, OSError) as exc:
            log.warning(
                "GPU warm-up failed; GPU jobs will tell why: %s",
                exc,
                extra={"worker": self.settings.name},
            )
        finally:
            self.status = "awake"

    async def _stop_if_hung(self) -> None:
        """A render with no output at all past the timeout is stopped, and so fails."""
        run, blender = self.run, self.blender
        if run is None or blender is None or run.hung:
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
            self.blender_job,
        ]

    async def _warm_blender(
        self, a: wire.Assignment, job_dir: Path, on_event: EventCallback
    ) -> WarmBlender:
        """The job's warm Blender, started if this is the job's first task here."""
        blend = safe_join(job_dir, a.command["blend"])
        device = str(a.command.get("render_device", "CPU")).upper()
        scripts = bool(a.command.get("scripts", True))
        current = self.blender
        if (
            current is not None
            and current.alive
            and self.blender_job == a.job_id
            and current.blend_path == blend.absolute()
            and current.device == device
            and current.scripts == scripts
        ):
            return current
        await self._stop_blender()
        install = self._install_for(blend)
        # The standby runs the newest Blender: an older file's job starts the one it needs.
        standby_fits = self.standby is not None and self.standby.install == install
        if standby_fits and (standby := await self._take_standby(a.job_id)) is not None:
            await standby.open(blend, device, on_event, scripts=scripts)
            return standby
        blender = self._new_blender(blend, device, scripts, install=install)
        self.blender, self.blender_job = blender, a.job_id
        await blender.start(on_event=on_event)
        return blender

    def _install_for(self, blend: Path) -> BlenderInstall:
        """The Blender closest to the one that saved the file, and not older than it."""
        version = choose_blender(blend_version_text(blend), [i.version for i in self.installs])
        return next(i for i in self.installs if i.version == version)

    def _new_blender(
        self,
        blend: Path | None,
        device: str = "CPU",
        scripts: bool = True,
        *,
        install: BlenderInstall | None = None,
    ) -> WarmBlender:
        return WarmBlender(
            install or self.install,
            blend,
            device=device,
            scripts=scripts,
            user_resources=self.data / "blender-user",
            env=self.blender_env,
            temp_root=self.blender_temp,
        )

    def _keep_standby(self) -> None:
        """Start a Blender on standby in the background, unless one exists or cannot start."""
        if not self.settings.standby_blender or self.standby is not None or self.standby_failed:
            return
        if self.status != "awake":
            return
        self.standby = self._new_blender(None)
        self.standby_starting = asyncio.create_task(self._start_standby(self.standby))

    async def _start_standby(self, blender: WarmBlender) -> bool:
        try:
            await blender.start()
            return True
        except BlenderFailed as exc:
            # Not retried: each job then starts its own Blender, which reports the failure.
            self.standby_failed = True
            log.warning("no Blender on standby: %s", exc, extra={"worker": self.settings.name})
            return False

    async def _take_standby(self, job_id: str) -> WarmBlender | None:
        """The Blender on standby, now the job's; None when there is none that works."""
        standby, starting = self.standby, self.standby_starting
        self.standby, self.standby_starting = None, None
        if standby is None:
            return None
        # From here it is the job's Blender: a cancel stops it like any other.
        self.blender, self.blender_job = standby, job_id
        if starting is not None and not await starting:
            self.blender, self.blender_job = None, None
            return None
        return standby if standby.on_standby else None

    async def _on_blender_event(self, run: TaskRun, event: dict[str, Any]) -> None:
        run.last_sign_of_life = time.monotonic()
        kind = event.get("event")
        if kind == "log":
            run.log_lines.append(event["line"])
        elif kind == "warning":
            run.log_lines.append(f"WARNING: {event['line']}")
        elif kind == "progress" and event.get("samples"):
            fraction = event["sample"] / event["samples"]
            run.set_progress(
                fraction, f"frame {event.get('frame')}: sample {event['sample']}/{event['samples']}"
            )
        elif kind == "frame":
            path = Path(event["path"])
            # Refused here as the Manager and Server would refuse it: the task fails saying why
            # (UnsafePath stops Blender, see WarmBlender.render), nothing stuck in the outbox.
            check_frame_file_name(path.name)
            # A frame that is not whole, or not the job's size or format, never counts: the
            # task fails naming it (BadFrame stops Blender like UnsafePath).
            await asyncio.to_thread(
                check_frame, path, path.name, int(event["frame"]), self._expectation(run, event)
            )
            sha256 = self.blobs.put_file(path)
            a = run.a
            self.outbox.add_frame(
                FrameItem(a.task_id, int(event["frame"]), sha256, path.name, job_id=a.job_id)
            )
            run.frames_done += 1
            run.frame_started = time.monotonic()
            if event.get("seconds") is not None:
                run.frame_s = float(event["seconds"])
                self.frame_s = (run.a.job_id, run.frame_s)
            run.set_progress(0.0, f"frame {event['frame']} saved")
            self._report(run, progress=run.progress.progress, activity=run.progress.activity)
        if (
            len(run.log_lines) >= LOG_FLUSH_LINES
            or time.monotonic() - run.last_log_flush > LOG_FLUSH_S
        ):
            self._flush_log(run)

    @staticmethod
    def _expectation(run: TaskRun, event: dict[str, Any]) -> FrameExpectation:
        """What a frame must be: the size and format Blender said it writes, and not blank
        when the job asks."""
        size = event.get("size")
        return FrameExpectation(
            size=(int(size[0]), int(size[1])) if size else None,
            file_format=event.get("file_format"),
            check_blank=bool(run.a.command.get("check_blank", False)),
        )

    def _flush_log(self, run: TaskRun, wake: bool = True) -> None:
        run.last_log_flush = time.monotonic()
        if run.log_lines:
            lines, run.log_lines = run.log_lines, []
            self._report(run, wake=wake, log=lines)

    # ---- Blender lifetime --------------------------------------------------------------------

    async def _retire_idle_blender(self) -> None:
        idle_for = time.monotonic() - self.blender_idle_since
        if (
            self.runner is None
            and self.blender is not None
            and idle_for > self.settings.warm_idle_s
        ):
            log.info(
                "stopping the warm Blender of job %s after %.0f s idle", self.blender_job, idle_for
            )
            await self._stop_blender()

    async def _stop_blender(self) -> None:
        # Forget it first: a cancel arriving during the terminate must not leave it for reuse.
        blender, self.blender, self.blender_job = self.blender, None, None
        if blender is not None:
            await asyncio.shield(blender.terminate())

    async def _shutdown(self) -> None:
        if self.next is not None:
            self._hand_back(self.next)
            self.next = None
        if self.runner is not None and self.run is not None:
            # Hand the task back at once rather than let the Manager wait for us to go silent.
            self._report(self.run, status=TaskStatus.QUEUED, activity="worker stopped")
            self.runner.cancel()
            await wait_quietly(self.runner)
        await self._stop_blender()
        standby, starting, self.standby = self.standby, self.standby_starting, None
        if starting is not None:
            starting.cancel()
            await wait_quietly(starting)
        if standby is not None:
            await standby.terminate()
