"""The Worker's Blenders: the warm one of the job it works on, and one on standby.

One warm Blender per job renders every task of that job the Worker gets; it is stopped when
a task of another job (or the same job with another file, device or script trust) comes, or
after `warm_idle_s` without a task. An idle Worker keeps one Blender on standby (bpy
imported, no file; the newest Blender it offers), which a new job's first task turns into
that job's Blender by sending it the file.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from pathlib import Path

from flamenco.aio import wait_quietly
from flamenco.blendfile import blend_version_text
from flamenco.core.matching import choose_blender
from flamenco.worker.blender import BlenderInstall, Event
from flamenco.worker.warm_blender import BlenderFailed, EventCallback, WarmBlender

log = logging.getLogger("flamenco.worker")


class BlenderPool:
    def __init__(
        self,
        installs: list[BlenderInstall],
        *,
        user_resources: Path,
        env: Mapping[str, str],
        temp_root: Path,
        standby: bool,
        worker_name: str,
    ) -> None:
        self.installs = installs  # oldest first
        self.user_resources = user_resources
        self.env = env
        self.temp_root = temp_root  # each Blender child's own temp folder goes under it
        self.standby_wanted = standby
        self.worker_name = worker_name
        self.blender: WarmBlender | None = None
        self.job_id: str | None = None  # the job whose file `blender` holds
        self.standby: WarmBlender | None = None  # bpy loaded, no file yet: the next job's
        self.standby_starting: asyncio.Task[bool] | None = None
        self.standby_failed = False
        self.idle_since = time.monotonic()

    @property
    def newest(self) -> BlenderInstall:
        return self.installs[-1]

    async def for_job(
        self, job_id: str, blend: Path, device: str, scripts: bool, on_event: EventCallback
    ) -> WarmBlender:
        """The job's warm Blender with `blend` open, started if this is the job's first task
        here (or its Blender cannot serve this one)."""
        current = self.blender
        if (
            current is not None
            and current.alive
            and self.job_id == job_id
            and current.blend_path == blend.absolute()
            and current.device == device
            and current.scripts == scripts
        ):
            return current
        await self.stop()
        install = self.install_for(blend)
        # The standby runs the newest Blender: an older file's job starts the one it needs.
        standby_fits = self.standby is not None and self.standby.install == install
        if standby_fits and (standby := await self._take_standby(job_id)) is not None:
            await standby.open(blend, device, on_event, scripts=scripts)
            return standby
        blender = self.new_blender(blend, device, scripts, install=install)
        self.blender, self.job_id = blender, job_id
        await blender.start(on_event=on_event)
        return blender

    def install_for(self, blend: Path) -> BlenderInstall:
        """The Blender closest to the one that saved the file, and not older than it."""
        version = choose_blender(blend_version_text(blend), [i.version for i in self.installs])
        return next(i for i in self.installs if i.version == version)

    def new_blender(
        self,
        blend: Path | None,
        device: str = "CPU",
        scripts: bool = True,
        *,
        install: BlenderInstall | None = None,
        list_devices: bool = False,
    ) -> WarmBlender:
        return WarmBlender(
            install or self.newest,
            blend,
            device=device,
            scripts=scripts,
            user_resources=self.user_resources,
            env=self.env,
            temp_root=self.temp_root,
            list_devices=list_devices,
        )

    # ---- standby -----------------------------------------------------------------------------

    def keep_standby(self, list_devices: bool = False) -> None:
        """Start a Blender on standby in the background, unless one exists or cannot start;
        with `list_devices`, it names Cycles' devices first (`standby_devices`)."""
        if not self.standby_wanted or self.standby is not None or self.standby_failed:
            return
        self.standby = self.new_blender(None, list_devices=list_devices)
        self.standby_starting = asyncio.create_task(self._start_standby(self.standby))

    async def standby_devices(self) -> Event | None:
        """Cycles' `devices` event from a Blender started on standby for it, the Worker's first;
        None when there is no standby to ask (turned off, or it failed to start)."""
        self.keep_standby(list_devices=True)
        standby, starting = self.standby, self.standby_starting
        if standby is None or starting is None or not await starting:
            return None
        return standby.devices

    async def _start_standby(self, blender: WarmBlender) -> bool:
        try:
            await blender.start()
            return True
        except BlenderFailed as exc:
            # Not retried: each job then starts its own Blender, which reports the failure.
            self.standby_failed = True
            log.warning("no Blender on standby: %s", exc, extra={"worker": self.worker_name})
            return False

    async def _take_standby(self, job_id: str) -> WarmBlender | None:
        """The Blender on standby, now the job's; None when there is none that works."""
        standby, starting = self.standby, self.standby_starting
        self.standby, self.standby_starting = None, None
        if standby is None:
            return None
        # From here it is the job's Blender: a cancel stops it like any other.
        self.blender, self.job_id = standby, job_id
        if starting is not None and not await starting:
            self.blender, self.job_id = None, None
            return None
        return standby if standby.on_standby else None

    # ---- stopping ----------------------------------------------------------------------------

    async def retire_if_idle(self, idle_s: float) -> None:
        """Stop the warm Blender once no task has used it for `idle_s` (the Worker calls this
        only while no task runs)."""
        idle_for = time.monotonic() - self.idle_since
        if self.blender is not None and idle_for > idle_s:
            log.info("stopping the warm Blender of job %s after %.0f s idle", self.job_id, idle_for)
            await self.stop()

    async def stop(self) -> None:
        """Stop the job's Blender."""
        # Forget it first: a cancel arriving during the terminate must not leave it for reuse.
        blender, self.blender, self.job_id = self.blender, None, None
        if blender is not None:
            await asyncio.shield(blender.terminate())

    async def shutdown(self) -> None:
        """Stop every Blender: the job's and the one on standby."""
        await self.stop()
        standby, starting, self.standby = self.standby, self.standby_starting, None
        if starting is not None:
            starting.cancel()
            await wait_quietly(starting)
        if standby is not None:
            await standby.terminate()
