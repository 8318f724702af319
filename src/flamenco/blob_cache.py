"""A bounded blob cache: the Manager's and the Worker's BlobStore, kept under a size.

Least recently used blobs go first. "Used" is tracked in memory, in order, and written to each
file's modification time when it is used (access times are often not kept: `noatime`,
`relatime`), so that a restarted Worker or Manager starts from the same order.

A blob that a held or running task needs, or that waits in an outbox to go upstream, is
*pinned* (`pins()`, asked only when room must be made) and never evicted. When pinned blobs
alone pass the bound they are kept, and a warning names the jobs and tasks that need them:
the bound must never fail a task.

Room is made before a blob is written whenever its size is known (a download's
Content-Length, a local file), so the folder stays within its bound while a blob arrives;
one whose size was not announced is made room for as soon as it is in. The kept bytes of
uploads that may resume (`tmp/partial-*`, frames coming up from Workers) count against the
bound as they lie on disk; room for the rest of one is made (and held, as several arrive at
once) when it resumes, and room for its copy into place when it is complete (the intake reads
it into a blob). Once a cache is full, room is made down to `low_water` of the bound (95 %),
so that asking for the pins (every held task's files, on a busy Manager) happens once per few
hundred MB, not with every frame.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from collections import OrderedDict
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterator, Mapping
from pathlib import Path

from flamenco.blobs import BlobStore, PartialUpload, is_sha256
from flamenco.core.sizes import UNLIMITED, format_size

log = logging.getLogger("flamenco.cache")

# sha256 -> who needs it, for the warning when pinned blobs pass the bound ("job J task T")
Pins = Callable[[], Mapping[str, str]]
LOW_WATER = 0.95  # a full cache is emptied down to this share of its bound


def no_pins() -> Mapping[str, str]:
    return {}


class Reservation:
    """Room made for a blob that is arriving: what of it is not on disk yet."""

    def __init__(self, incoming: int) -> None:
        self.left = incoming

    async def counting(self, chunks: AsyncIterable[bytes]) -> AsyncIterator[bytes]:
        """`chunks`, each leaving the reservation once it is written (when the writer asks
        for the next one)."""
        async for chunk in chunks:
            yield chunk
            self.left = max(0, self.left - len(chunk))


class BoundedBlobStore(BlobStore):
    """A BlobStore of at most `cap` bytes (UNLIMITED, 0: no bound), least recently used first
    out, never evicting a pinned blob. One process owns the folder (a Worker, a Manager)."""

    def __init__(
        self,
        root: Path,
        cap: int,
        pins: Pins = no_pins,
        owner: str = "",
        low_water: float = LOW_WATER,
    ) -> None:
        super().__init__(root)
        self.cap = cap
        self.low_water = low_water
        self.pins = pins
        self.owner = owner  # for the logs: "Worker w1", "Manager local"
        self._entries: OrderedDict[str, int] = OrderedDict()  # sha -> bytes, oldest use first
        self.bytes_used = 0
        self._reservations: list[Reservation] = []  # blobs being written, made room for
        self._warned: frozenset[str] = frozenset()
        self.evictions = 0
        self._scan()

    def _scan(self) -> None:
        """What a previous run left: its blobs in their order of use, no half-written files."""
        shutil.rmtree(self.root / "tmp", ignore_errors=True)
        (self.root / "tmp").mkdir(exist_ok=True)
        found: list[tuple[float, str, int]] = []
        for path in self.root.glob("??/*"):
            if is_sha256(path.name):
                with contextlib.suppress(FileNotFoundError):
                    st = path.stat()
                    found.append((st.st_mtime, path.name, st.st_size))
        for _, sha256, size in sorted(found):
            self._entries[sha256] = size
            self.bytes_used += size

    # ---- use ---------------------------------------------------------------------------------

    def use(self, sha256: str) -> None:
        """The blob was just used: it becomes the last to go."""
        if sha256 in self._entries:
            self._entries.move_to_end(sha256)
            with contextlib.suppress(FileNotFoundError):
                os.utime(self.path(sha256))

    # ---- writing, within the bound -------------------------------------------------------------

    async def put_stream(
        self,
        chunks: AsyncIterable[bytes],
        expected: str | None = None,
        size_hint: int | None = None,
    ) -> str:
        with self._room_for(size_hint or 0):
            digest = await super().put_stream(chunks, expected)
        self._added(digest)
        return digest

    def put_file(self, source: Path, expected: str | None = None) -> str:
        with self._room_for(source.stat().st_size):
            digest = super().put_file(source, expected)
        self._added(digest)
        return digest

    async def append_partial(
        self, sha256: str, uploader: str, offset: int, total: int, chunks: AsyncIterable[bytes]
    ) -> PartialUpload:
        # Reserved while it arrives, as other uploads may arrive beside it; each chunk on disk
        # leaves the reservation, as the kept file (`_partial_bytes`) counts it from then on.
        with self._room_for(total - offset) as reservation:
            arriving = reservation.counting(chunks)
            return await super().append_partial(sha256, uploader, offset, total, arriving)

    def commit_partial(self, upload: PartialUpload) -> str:
        digest = super().commit_partial(upload)  # its bytes were counted as kept
        self._added(digest)
        return digest

    def _partial_bytes(self) -> int:
        """The bytes of unfinished uploads kept for resuming (blobs.py `append_partial`)."""
        total = 0
        for path in self.partial_files():
            with contextlib.suppress(FileNotFoundError):
                total += path.stat().st_size
        return total

    @property
    def _reserved(self) -> int:
        """Bytes of blobs being written, made room for and not yet on disk."""
        return sum(reservation.left for reservation in self._reservations)

    @contextlib.contextmanager
    def _room_for(self, incoming: int) -> Iterator[Reservation]:
        self._make_room(incoming)
        reservation = Reservation(incoming)
        self._reservations.append(reservation)
        try:
            yield reservation
        finally:
            self._reservations.remove(reservation)

    def _added(self, sha256: str) -> None:
        if sha256 not in self._entries:  # else the same blob arrived twice at once
            size = self.size(sha256)
            self._entries[sha256] = size
            self.bytes_used += size
        self._entries.move_to_end(sha256)
        self._make_room(0, keep=sha256)  # in case its size was not known before

    def _make_room(self, incoming: int, keep: str | None = None) -> None:
        """Evict least recently used, unpinned blobs until `incoming` more bytes fit, down to
        the low-water mark."""
        if self.cap == UNLIMITED:
            return
        incoming += self._partial_bytes()
        wanted = self.bytes_used + self._reserved + incoming
        if wanted <= self.cap:
            return
        over = wanted - int(self.cap * self.low_water)
        pinned = self.pins()
        evicted = 0
        for sha256 in list(self._entries):
            if over <= 0:
                break
            if sha256 in pinned or sha256 == keep:
                continue
            size = self._entries.pop(sha256)
            self.path(sha256).unlink(missing_ok=True)
            self.bytes_used -= size
            over -= size
            evicted += 1
        self.evictions += evicted
        if evicted:
            log.info(
                "%s cache: %d least recently used blobs evicted, %s in use of %s",
                self.owner,
                evicted,
                format_size(self.bytes_used),
                format_size(self.cap),
            )
        if self.bytes_used + self._reserved + incoming > self.cap:
            self._warn_pinned(pinned)
        else:
            self._warned = frozenset()

    def _warn_pinned(self, pinned: Mapping[str, str]) -> None:
        """Once per set of tasks: what they need passes the bound, and is kept."""
        needed_by = frozenset(pinned[sha] for sha in self._entries if sha in pinned)
        if needed_by == self._warned:
            return
        self._warned = needed_by
        log.warning(
            "%s cache: %s is over its bound of %s; the files still needed by %s are kept",
            self.owner,
            format_size(self.bytes_used),
            format_size(self.cap),
            ", ".join(sorted(needed_by)) or "the blob being written",
        )
