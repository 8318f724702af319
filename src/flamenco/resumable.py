"""The HTTP side of transfers that resume, shared by the Server's and the Manager's routes.

Downloads: `serve_blob` answers `Range: bytes=N-` with 206 and the rest of the file (a range
that cannot be served: 416 with its sentence). Uploads: a PUT with `Content-Range: bytes
N-*/TOTAL` appends its body to what the receiver kept of that blob from that uploader
(`BlobStore.append_partial`); `GET …/blobs/{sha}/upload` says how much that is, so an uploader
whose connection dropped resumes there. A PUT without Content-Range is a whole upload, as
before. The hash is checked over the whole file once it is complete.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path

from fastapi import Request
from fastapi.responses import FileResponse, JSONResponse, Response
from starlette.requests import ClientDisconnect

from flamenco import wire
from flamenco.aio import wait_any
from flamenco.blobs import (
    CHUNK,
    PARTIAL_KEEP_S,
    BlobStore,
    PartialUpload,
    UploadBody,
    is_sha256,
)
from flamenco.core.byte_ranges import RangeError, download_range, resume_mismatch, upload_range
from flamenco.errors import BadRequest, Conflict, RangeNotSatisfiable

log = logging.getLogger("flamenco.transfers")
SWEEP_INTERVAL_S = 3600.0


def serve_blob(path: Path, request: Request) -> tuple[FileResponse, int]:
    """The blob, or the range of it the request asks for (checked here, so that a range that
    cannot be served gets its sentence; the file response then sends it as 206), and how
    many bytes that is."""
    header = request.headers.get("range")
    size = path.stat().st_size
    if header is not None:
        try:
            size = download_range(header, size).length
        except RangeError as exc:
            raise RangeNotSatisfiable(str(exc), size) from exc
    return FileResponse(path, media_type="application/octet-stream"), size


def upload_offset(store: BlobStore, sha256: str, uploader: str) -> wire.UploadOffset:
    """The bytes kept of `uploader`'s unfinished upload (where a frame or artifact resumes:
    it must still pass its intake), and whether the blob itself is in place already."""
    kept = store.partial_size(sha256, uploader)
    return wire.UploadOffset(sha256=sha256, offset=kept, complete=store.has(sha256))


class Incomplete(Exception):
    """The body ended before the whole file was in: answer 202 with the offset."""

    def __init__(self, sha256: str, kept: int) -> None:
        super().__init__(f"{kept} bytes of blob {sha256} are kept.")
        self.answer = JSONResponse(
            wire.UploadOffset(sha256=sha256, offset=kept).model_dump(), status_code=202
        )


async def receive_upload(
    request: Request, store: BlobStore, sha256: str, uploader: str
) -> AsyncIterator[bytes] | PartialUpload:
    """The body of an upload, to be stored as usual: the request's own stream when it has no
    Content-Range; else the resumed upload once it is complete in `store`
    (`BlobStore.commit_partial` puts it into place). Raises Incomplete when the body ended
    early, Conflict (409) when it resumes elsewhere than where the kept bytes end,
    RangeNotSatisfiable (416) for a range that makes no sense."""
    header = request.headers.get("content-range")
    if header is None:
        return request.stream()
    try:
        wanted = upload_range(header)
    except RangeError as exc:
        raise RangeNotSatisfiable(str(exc), store.partial_size(sha256, uploader)) from exc
    kept = store.partial_size(sha256, uploader)
    mismatch = resume_mismatch(wanted.offset, kept)
    if mismatch is not None:
        raise Conflict(mismatch)
    if wanted.offset:
        log.info("Upload of blob %s by %s resumes at byte %d", sha256, uploader, wanted.offset)
    try:
        upload = await store.append_partial(
            sha256, uploader, wanted.offset, wanted.total, request.stream()
        )
    except ClientDisconnect:  # the bytes that came are kept; nobody hears the answer
        kept = store.partial_size(sha256, uploader)
        log.info("Upload of blob %s by %s dropped at byte %d", sha256, uploader, kept)
        raise Incomplete(sha256, kept) from None
    if upload.kept < wanted.total:
        raise Incomplete(sha256, upload.kept)
    return upload


async def upload_body(
    request: Request, store: BlobStore, sha256: str, uploader: str
) -> UploadBody | Response:
    """A frame's or artifact's bytes for its intake: the request's own, or its resumed
    upload's once complete; else the answer to give now (202 with the offset). `sha256` is
    the X-Flamenco-SHA256 header the file is stored under: one that is not a hash is a 400."""
    if not is_sha256(sha256):
        raise BadRequest("The X-Flamenco-SHA256 header is not a SHA-256 hex digest.")
    try:
        body = await receive_upload(request, store, sha256, uploader)
    except Incomplete as incomplete:
        return incomplete.answer
    if isinstance(body, PartialUpload):
        return UploadBody(partial_chunks(store, body), body.kept)
    declared = request.headers.get("content-length", "")
    return UploadBody(body, int(declared) if declared.isdigit() else None)


async def partial_chunks(store: BlobStore, upload: PartialUpload) -> AsyncIterator[bytes]:
    """A complete partial upload as a stream, for the intake that stores streams (frames,
    artifacts); the partial file goes once it has been read, whatever the intake decided."""
    try:
        with upload.path.open("rb") as f:
            while chunk := f.read(CHUNK):
                yield chunk
    finally:
        store.drop_partial(upload)


async def sweep_partials(
    store: BlobStore,
    stop: asyncio.Event,
    interval_s: float = SWEEP_INTERVAL_S,
    keep_s: float = PARTIAL_KEEP_S,
) -> None:
    """Hourly until `stop`: the uploads nobody resumed for a day go, so kept bytes stay bounded."""
    while not stop.is_set():
        try:
            swept = await asyncio.to_thread(store.sweep_partials, keep_s)
        except OSError:
            log.exception("Deleting abandoned partial uploads failed; will try again")
        else:
            if swept:
                log.info(
                    "%d abandoned partial uploads deleted (not resumed for %.0f s)", swept, keep_s
                )
        await wait_any(stop, timeout=interval_s)
