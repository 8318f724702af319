"""Content-addressed file storage shared by the Server, the Manager's cache and the Worker's cache.

Every blob is stored under its SHA-256. Writes go to a temporary file in the same folder and
are renamed into place only after the hash checks out, so a reader never sees half a blob.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import tempfile
import time
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from dataclasses import dataclass
from pathlib import Path

from flamenco.addon.render_flamenco.hash_cache import sha256_file
from flamenco.core.byte_ranges import resume_mismatch
from flamenco.core.names import UnsafePath, check_file_name, check_relative_path
from flamenco.errors import Conflict

# The name checks live in core.names; they are also reached here, next to safe_join.
__all__ = [
    "BlobStore",
    "BlobTooLarge",
    "HashMismatch",
    "PartialUpload",
    "UnsafePath",
    "check_file_name",
    "check_relative_path",
    "is_sha256",
    "safe_join",
    "sha256_file",
]

SHA256_PATTERN = re.compile(r"^[0-9a-f]{64}$")
CHUNK = 1024 * 1024
TEMP_PREFIX = ".tmp-"
PARTIAL_PREFIX = "partial-"
ATTEMPT_PREFIX = "attempt-"  # one request's own name for a kept upload's file
PARTIAL_KEEP_S = 24 * 3600.0  # an upload not resumed for this long is given up: its bytes go


class HashMismatch(ValueError):
    """The bytes received do not hash to the SHA-256 they were announced with."""


class BlobTooLarge(ValueError):
    """A blob exceeded the size limit while it was being received."""


def is_sha256(value: str) -> bool:
    return bool(SHA256_PATTERN.match(value))


def temp_beside(dest: Path) -> Path:
    """A temporary name in dest's folder for writing dest whole before renaming it into
    place. It never derives from dest's name: a name that just fits the file system must not
    fail because of a suffix."""
    return dest.parent / f"{TEMP_PREFIX}{uuid.uuid4().hex}"


def safe_join(root: Path, relpath: str) -> Path:
    return root.joinpath(*check_relative_path(relpath).parts)


@dataclass(frozen=True)
class PartialUpload:
    """What one request appended to an upload that resumes: `kept` bytes are in now, and,
    once all are in, `path` is this request's own name for them (blobs.py, kept uploads)."""

    sha256: str
    uploader: str
    kept: int
    path: Path


@dataclass(frozen=True)
class UploadBody:
    """A frame's or artifact's bytes for its intake, and how many there are where that is
    known (Content-Length, a completed resumed upload), so that a bounded cache makes room
    before it writes them (blob_cache.py)."""

    chunks: AsyncIterator[bytes]
    size: int | None


class BlobStore:
    """Blobs on disk at root/ab/abcdef…; safe for several processes writing the same blob."""

    def __init__(self, root: Path, max_blob_bytes: int | None = None) -> None:
        self.root = root
        self.max_blob_bytes = max_blob_bytes
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "tmp").mkdir(exist_ok=True)

    def path(self, sha256: str) -> Path:
        if not is_sha256(sha256):
            raise ValueError(f"'{sha256}' is not a SHA-256 hex digest.")
        return self.root / sha256[:2] / sha256

    def has(self, sha256: str) -> bool:
        return self.path(sha256).is_file()

    def missing(self, hashes: Iterable[str]) -> list[str]:
        return sorted({h for h in hashes if not self.has(h)})

    def size(self, sha256: str) -> int:
        return self.path(sha256).stat().st_size

    def _temp(self) -> tuple[int, str]:
        return tempfile.mkstemp(dir=self.root / "tmp", prefix="incoming-")

    def _commit(self, tmp_name: str, digest: str, expected: str | None) -> str:
        if expected is not None and digest != expected:
            os.unlink(tmp_name)
            raise HashMismatch(
                f"The uploaded bytes hash to {digest}, not to the announced {expected}."
            )
        final = self.path(digest)
        final.parent.mkdir(exist_ok=True)
        os.replace(tmp_name, final)  # 0600 as mkstemp made it: a farm's files are its own
        return digest

    def _check_size(self, received: int, tmp_name: str) -> None:
        if self.max_blob_bytes is not None and received > self.max_blob_bytes:
            os.unlink(tmp_name)
            raise BlobTooLarge(
                f"The upload is larger than the limit of {self.max_blob_bytes} bytes."
            )

    async def put_stream(
        self,
        chunks: AsyncIterable[bytes],
        expected: str | None = None,
        size_hint: int | None = None,
    ) -> str:
        """Store the bytes of an async stream; return their SHA-256. `size_hint`, the size
        announced (Content-Length), lets a bounded cache make room first (blob_cache.py)."""
        fd, tmp_name = self._temp()
        digest, received = hashlib.sha256(), 0
        try:
            with os.fdopen(fd, "wb") as out:
                async for chunk in chunks:
                    received += len(chunk)
                    self._check_size(received, tmp_name)
                    digest.update(chunk)
                    out.write(chunk)
        except BaseException:
            if os.path.exists(tmp_name):
                os.unlink(tmp_name)
            raise
        return self._commit(tmp_name, digest.hexdigest(), expected)

    def put_file(self, source: Path, expected: str | None = None) -> str:
        """Copy a local file into the store; return its SHA-256."""
        fd, tmp_name = self._temp()
        digest = hashlib.sha256()
        try:
            with os.fdopen(fd, "wb") as out, source.open("rb") as src:
                while chunk := src.read(CHUNK):
                    digest.update(chunk)
                    out.write(chunk)
        except BaseException:  # a full disk, say: nothing half-written stays behind
            if os.path.exists(tmp_name):
                os.unlink(tmp_name)
            raise
        return self._commit(tmp_name, digest.hexdigest(), expected)

    # ---- uploads that resume: the bytes kept so far, per blob and uploader --------------------
    #
    # `partial_path` holds what resuming continues. Each request also names the same file
    # under an attempt name of its own (a hard link) and writes and commits through that name,
    # so when the same uploader sends the same blob twice at once (two submissions sharing a
    # texture), a second upload from byte 0 takes over the kept name with a file of its own
    # and never truncates nor commits the first one's bytes.

    def partial_path(self, sha256: str, uploader: str) -> Path:
        """Where the bytes of `uploader`'s unfinished upload of a blob are kept. Each uploader
        has its own, so two uploading the same blob at once never mix their bytes."""
        if not is_sha256(sha256):
            raise ValueError(f"'{sha256}' is not a SHA-256 hex digest.")
        who = hashlib.sha256(uploader.encode()).hexdigest()[:16]
        return self.root / "tmp" / f"{PARTIAL_PREFIX}{sha256}-{who}"

    def partial_size(self, sha256: str, uploader: str) -> int:
        try:
            return self.partial_path(sha256, uploader).stat().st_size
        except FileNotFoundError:
            return 0

    async def append_partial(
        self, sha256: str, uploader: str, offset: int, total: int, chunks: AsyncIterable[bytes]
    ) -> PartialUpload:
        """Write a body at `offset` of the kept bytes (0 starts over); return how many bytes
        are kept now, and the attempt's own name for them while they are all in. Every byte
        that arrived stays, also when the connection drops, so the next request resumes
        there. The caller checked `offset` against `partial_size`."""
        if self.max_blob_bytes is not None and total > self.max_blob_bytes:
            raise BlobTooLarge(
                f"The upload is larger than the limit of {self.max_blob_bytes} bytes."
            )
        kept_path = self.partial_path(sha256, uploader)
        attempt = kept_path.with_name(f"{ATTEMPT_PREFIX}{kept_path.name}-{uuid.uuid4().hex}")
        try:
            self._name_attempt(kept_path, attempt, offset)
            kept = offset
            # Unbuffered: what arrived is on disk at once, so the offset asked next is all of it.
            with attempt.open("r+b", buffering=0) as out:
                out.truncate(offset)
                out.seek(offset)
                async for chunk in chunks:
                    if kept + len(chunk) > total:
                        raise BlobTooLarge(
                            f"The upload sends more than the {total} bytes "
                            "its Content-Range announced."
                        )
                    out.write(chunk)
                    kept += len(chunk)
        except BaseException:
            attempt.unlink(missing_ok=True)  # the kept name holds what arrived
            raise
        if kept < total:
            attempt.unlink()
        return PartialUpload(sha256, uploader, kept, attempt)

    @staticmethod
    def _name_attempt(kept_path: Path, attempt: Path, offset: int) -> None:
        if offset:  # resuming: the attempt continues the kept file
            try:
                os.link(kept_path, attempt)
            except FileNotFoundError:  # put into place or swept since the offset was checked
                raise Conflict(resume_mismatch(offset, 0) or "") from None
            return
        attempt.touch(exist_ok=False)  # starting over: a file of its own becomes the kept one
        swap = temp_beside(kept_path)
        os.link(attempt, swap)
        os.replace(swap, kept_path)

    def commit_partial(self, upload: PartialUpload) -> str:
        """A complete upload into place, if its bytes hash to its SHA-256 (else it is deleted
        and HashMismatch raised: the uploader starts over)."""
        self._forget_kept(upload)
        return self._commit(str(upload.path), sha256_file(upload.path), upload.sha256)

    def drop_partial(self, upload: PartialUpload) -> None:
        self._forget_kept(upload)
        upload.path.unlink(missing_ok=True)

    def _forget_kept(self, upload: PartialUpload) -> None:
        """The kept name goes with its complete attempt, unless a newer attempt took it over."""
        kept_path = self.partial_path(upload.sha256, upload.uploader)
        with contextlib.suppress(FileNotFoundError):
            if os.path.samefile(kept_path, upload.path):
                kept_path.unlink()

    def partial_files(self) -> list[Path]:
        """Every kept upload and attempt, each file once (an attempt names a kept file too)."""
        seen: dict[tuple[int, int], Path] = {}
        for path in (self.root / "tmp").iterdir():
            if path.name.startswith((PARTIAL_PREFIX, ATTEMPT_PREFIX)):
                with contextlib.suppress(FileNotFoundError):
                    info = path.stat()
                    seen.setdefault((info.st_dev, info.st_ino), path)
        return list(seen.values())

    def sweep_partials(self, older_than_s: float = PARTIAL_KEEP_S) -> int:
        """Delete the unfinished uploads nobody resumed for `older_than_s`; return how many."""
        cutoff = time.time() - older_than_s
        swept = 0
        for path in (self.root / "tmp").iterdir():
            if not path.name.startswith((PARTIAL_PREFIX, ATTEMPT_PREFIX)):
                continue
            with contextlib.suppress(FileNotFoundError):
                if path.stat().st_mtime < cutoff:
                    path.unlink()
                    swept += path.name.startswith(PARTIAL_PREFIX)
        return swept

    def link_to(self, sha256: str, dest: Path) -> None:
        """Place a blob at dest, hard-linked where the file system allows, else copied."""
        dest.parent.mkdir(parents=True, exist_ok=True)
        if dest.exists() and os.path.samefile(self.path(sha256), dest):
            return  # already there: replacing a hard link by itself would do nothing
        tmp = temp_beside(dest)
        try:
            try:
                os.link(self.path(sha256), tmp)
            except OSError:
                shutil.copyfile(self.path(sha256), tmp)
            os.replace(tmp, dest)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
