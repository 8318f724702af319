"""Which blobs a deleted job frees: none that a submission may still be about to use.

A submission asks which of its hashes the Server lacks (`POST /api/v1/blobs/missing`),
uploads those (`PUT /api/v1/blobs/{sha}`), then creates its job. Until that last step its
blobs belong to no job, so deleting another job that shared one used to free it, and the
creation then failed with "never uploaded". So each blob a submission touches is *claimed*:
a hash it asks about that the Server has, and a hash it uploads, get a row with the time. A
delete frees no blob claimed in the last `grace_s` (10 minutes): far longer than the step
from the last question to the job (the CLI asks once more after its uploads, so the claims
of a long upload's first files are renewed before it creates the job).

Claims live in a table rather than in the files' modification times: frames and artifacts
go through the same store, and a job deleted a minute after its last frame must free them.
Claims older than the grace are dropped with the next delete, which also frees their blobs
if no job uses them: what a submission uploaded and never made a job of goes away then.

One lock orders claims against a delete's decision and its unlinking, so a blob is either
freed before a submission's question (which then says it is missing) or kept. It holds
within one Server process, which is how a Server runs.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterable, Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from flamenco.blobs import BlobStore, PartialUpload
from flamenco.db import utcnow
from flamenco.server.models import BlobClaim, BlobRow

CLAIM_GRACE_S = 600.0
CLAIMS_PER_STATEMENT = 1000  # hashes per statement: SQLite allows some 32,000 parameters


class BlobCollector:
    """The Server's door for asking about, uploading and freeing blobs."""

    def __init__(
        self,
        sessions: sessionmaker,
        store: BlobStore,
        grace_s: float = CLAIM_GRACE_S,
        now: Callable[[], datetime] = utcnow,
    ) -> None:
        self.sessions = sessions
        self.store = store
        self.grace = timedelta(seconds=grace_s)
        self.now = now
        self._lock = threading.Lock()

    def missing(self, hashes: Iterable[str]) -> list[str]:
        """The hashes the Server lacks; those it has are claimed for the asking submission."""
        wanted = set(hashes)
        with self._lock:
            missing = self.store.missing(wanted)
            self._claim(wanted.difference(missing))
        return missing

    async def upload(self, sha256: str, chunks: AsyncIterable[bytes]) -> int:
        """Store an uploaded blob; return its size. Claimed before its bytes arrive, so a
        delete that decides meanwhile keeps it."""
        await asyncio.to_thread(self.claim, [sha256])
        await self.store.put_stream(chunks, expected=sha256)
        return self.store.size(sha256)

    async def upload_completed(self, upload: PartialUpload) -> int:
        """Put a resumed upload, now complete, into place (hash-checked); return its size."""
        await asyncio.to_thread(self.claim, [upload.sha256])
        await asyncio.to_thread(self.store.commit_partial, upload)
        return self.store.size(upload.sha256)

    def claim(self, hashes: Iterable[str]) -> None:
        with self._lock:
            self._claim(set(hashes))

    def _claim(self, hashes: set[str]) -> None:
        if not hashes:
            return
        now = self.now()
        rows = [{"sha256": sha256, "claimed_at": now} for sha256 in sorted(hashes)]
        with self.sessions.begin() as s:
            insert = (
                postgresql.insert if s.get_bind().dialect.name == "postgresql" else sqlite.insert
            )
            for start in range(0, len(rows), CLAIMS_PER_STATEMENT):
                stmt = insert(BlobClaim).values(rows[start : start + CLAIMS_PER_STATEMENT])
                s.execute(
                    stmt.on_conflict_do_update(
                        index_elements=[BlobClaim.sha256],
                        set_={"claimed_at": stmt.excluded.claimed_at},
                    )
                )

    @contextmanager
    def freeing(self) -> Iterator[None]:
        """Held from a delete's decision until its files are gone: no claim lands between."""
        with self._lock:
            yield

    def unused(self, s: Session, candidates: set[str], in_use: set[str]) -> set[str]:
        """Of a deleted job's blobs and those whose claims expired, the ones to free now.

        Call inside `freeing()` and the delete's transaction; unlink the files after it.
        """
        cutoff = self.now() - self.grace
        claims = s.execute(select(BlobClaim.sha256, BlobClaim.claimed_at)).all()
        recent = {sha256 for sha256, at in claims if at >= cutoff}
        expired = {sha256 for sha256, at in claims if at < cutoff}
        if expired:
            s.execute(delete(BlobClaim).where(BlobClaim.claimed_at < cutoff))
        unused = sorted((candidates | expired) - in_use - recent)
        for start in range(0, len(unused), CLAIMS_PER_STATEMENT):
            chunk = unused[start : start + CLAIMS_PER_STATEMENT]
            s.execute(delete(BlobRow).where(BlobRow.sha256.in_(chunk)))
        return set(unused)

    def free(self, hashes: Iterable[str]) -> None:
        for sha256 in hashes:
            self.store.path(sha256).unlink(missing_ok=True)
