"""The job files a Manager hands its Workers: fetched from the Server once however many
Workers ask at once, kept in its bounded cache while a held task or the outbox needs them.
`ManagerService` (service.py) provides the state; this is its files' side."""

from __future__ import annotations

import asyncio
from pathlib import Path

from flamenco.blob_cache import BoundedBlobStore
from flamenco.client import ApiError, AsyncApi, Unreachable
from flamenco.errors import NotFound, Unavailable
from flamenco.manager.store import HeldTask
from flamenco.outbox import Outbox


class JobFiles:
    """The files' side of ManagerService (service.py), which provides these attributes."""

    blobs: BoundedBlobStore
    server: AsyncApi
    outbox: Outbox
    held: dict[str, HeldTask]
    _blob_locks: dict[str, asyncio.Lock]
    blob_downloads: int
    blob_download_bytes: int  # for /metrics (manager/metrics.py)

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
