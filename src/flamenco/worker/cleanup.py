"""What a Worker removes from its disk, so that it stays bounded over months.

- Blender's temporary files: each Blender child gets its own folder under the Worker's data
  folder (TMPDIR, TEMP and TMP point there; Blender makes its `blender_*` folder inside), removed
  as soon as that Blender ends, however it ends; what a killed Worker left is swept at start.
- Job folders (`jobs/<job id>/`: the job's files, linked from the cache, and its rendered
  frames, already in the cache for the outbox): removed once no task of the job has run here
  for `job_folder_idle_s`, never while a task of it runs or is reserved, or its Blender is warm.
- Which cached blobs the Worker needs (`needed_blobs`): those of its running and reserved
  tasks and those its outbox still has to send; the bounded cache never evicts them.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from flamenco import wire
from flamenco.outbox import Outbox

log = logging.getLogger("flamenco.worker")

SWEEP_EVERY_S = 30.0  # how often job folders are looked at
TEMP_ENV_NAMES = ("TMPDIR", "TEMP", "TMP")


# ---- Blender's temporary folders -------------------------------------------------------------


def sweep_temp_folders(root: Path) -> int:
    """Remove what Blender children of an earlier run left (a killed Worker cannot clean up).
    Only at start: the Worker owns `root`, no Blender of it is running yet."""
    if not root.is_dir():
        return 0
    stale = list(root.iterdir())
    for path in stale:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    return len(stale)


def own_temp_folder(root: Path) -> Path:
    """A new, private temporary folder for one Blender child."""
    root.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix="blender-", dir=root))


def temp_env(folder: Path) -> dict[str, str]:
    """The environment that makes a child (Blender, Python's tempfile) write there."""
    return {name: str(folder) for name in TEMP_ENV_NAMES}


async def remove_when_exited(proc: asyncio.subprocess.Process, folder: Path) -> None:
    """Remove the child's temporary folder once it has ended: normal exit, crash or kill.
    Also when the Worker's loop is torn down first (cancelled): its children go with it."""
    try:
        await proc.wait()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# ---- job folders -----------------------------------------------------------------------------


class JobFolders:
    """When each job last had a task here; removes the folders of jobs done with a while."""

    def __init__(
        self,
        root: Path,
        idle_s: float,
        worker: str,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.root = root
        self.idle_s = idle_s
        self.worker = worker
        self.clock = clock
        self._last_used: dict[str, float] = {}
        self._next_sweep = 0.0
        # Folders an earlier run left count from now: their jobs may come back at once.
        if root.is_dir():
            for folder in root.iterdir():
                self._last_used[folder.name] = clock()

    def used(self, job_id: str) -> None:
        self._last_used[job_id] = self.clock()

    def sweep(self, busy: Iterable[str | None], force: bool = False) -> list[str]:
        """Remove the folders of idle jobs, none in `busy` (running, reserved, warm Blender)."""
        now = self.clock()
        if not force and now < self._next_sweep:
            return []
        self._next_sweep = now + SWEEP_EVERY_S
        keep = {job_id for job_id in busy if job_id}
        removed = []
        for job_id, last in list(self._last_used.items()):
            if job_id in keep:
                self._last_used[job_id] = now
            elif now - last >= self.idle_s:
                shutil.rmtree(self.root / job_id, ignore_errors=True)
                del self._last_used[job_id]
                removed.append(job_id)
                log.info(
                    "removed the folder of job %s: no task of it here for %.0f s",
                    job_id,
                    now - last,
                    extra={"job": job_id, "worker": self.worker},
                )
        return removed


# ---- what the cache must keep ----------------------------------------------------------------


def needed_blobs(tasks: Iterable[wire.Assignment | None], outbox: Outbox) -> dict[str, str]:
    """Blob -> the job and task that need it: the running and reserved tasks' files, and the
    frames and artifacts the outbox has still to send."""
    needed = outbox.pending_files()
    for a in tasks:
        if a is not None:
            for sha256 in a.files.values():
                needed.setdefault(sha256, f"job {a.job_id} task {a.task_id}")
    return needed
