"""The Server's routes that move files and work between it and the others: blobs (users'
uploads, anyone's downloads, resumable), the add-on's zip, and the Managers' side (sync,
task updates, frames and artifacts)."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import Depends, FastAPI, Header, Path, Query, Request
from fastapi.responses import FileResponse, Response

from flamenco import wire
from flamenco.apidoc import STREAMED_BODY, body_answer, error_answers
from flamenco.blobs import PartialUpload
from flamenco.errors import NotFound
from flamenco.resumable import Incomplete, receive_upload, serve_blob, upload_body, upload_offset
from flamenco.server.deps import AnyManager, AnyUser, Meters, Services, Uploader, user_or_manager

Sha = Annotated[str, Path(pattern=r"^[0-9a-f]{64}$")]
# The routes that stream a file in, and so may take more than a JSON body (see RouteLimits).
UPLOAD_ROUTES = (
    ("PUT", "/api/v1/blobs/{sha256}"),
    ("PUT", "/api/v1/manager/tasks/{task_id}/frames/{frame}"),
    ("PUT", "/api/v1/manager/tasks/{task_id}/artifacts/{name:path}"),
)


def install_transfer_routes(app: FastAPI) -> None:
    """The add-on, blobs and the Managers' side, on the Server's app."""

    # ---- Blender add-on (src/flamenco/addon): public, like any download page -----------------

    @app.get(
        "/api/v1/addon/render_flamenco.zip",
        response_class=Response,
        responses=body_answer("application/zip"),
    )
    def addon_zip() -> Response:
        from flamenco.addon.builder import cached_bytes, zip_name

        return Response(
            cached_bytes(),
            media_type="application/zip",
            headers={"Content-Disposition": f'attachment; filename="{zip_name()}"'},
        )

    # ---- blobs -------------------------------------------------------------------------------

    @app.post("/api/v1/blobs/missing")
    def missing_blobs(q: wire.BlobQuery, _: AnyUser, svc: Services) -> wire.BlobQueryResult:
        return wire.BlobQueryResult(missing=svc.blob_gc.missing(q.hashes))

    # With `Content-Range: bytes N-*/TOTAL` the body appends to what this user uploaded of
    # the blob before (resumable.py); 202 with the offset when it is not all in yet.
    @app.put(
        "/api/v1/blobs/{sha256}",
        status_code=201,
        openapi_extra=STREAMED_BODY,
        responses=error_answers(409, 416),
    )
    async def upload_blob(
        sha256: Sha, request: Request, user: AnyUser, svc: Services, meters: Meters
    ) -> dict:
        started = time.perf_counter()
        try:
            body = await receive_upload(request, svc.blobs, sha256, f"user {user.name}")
        except Incomplete as incomplete:
            return incomplete.answer  # type: ignore[return-value]
        if isinstance(body, PartialUpload):
            size = await svc.blob_gc.upload_completed(body)
        else:
            size = await svc.blob_gc.upload(sha256, body)
        meters.uploaded("blob", size, time.perf_counter() - started)
        return {"sha256": sha256, "size": size}

    @app.get("/api/v1/blobs/{sha256}/upload")
    def blob_upload_offset(sha256: Sha, who: Uploader, svc: Services) -> wire.UploadOffset:
        """How much of this user's or Manager's upload of the blob (or of a frame or artifact
        with that hash) the Server keeps: where to resume it."""
        return upload_offset(svc.blobs, sha256, who)

    @app.get(
        "/api/v1/blobs/{sha256}",
        dependencies=[Depends(user_or_manager)],
        response_class=FileResponse,
        responses={**body_answer("application/octet-stream"), **error_answers(416)},
    )
    def download_blob(sha256: Sha, request: Request, svc: Services, meters: Meters) -> FileResponse:
        """The blob; `Range: bytes=N-` resumes a dropped download (206)."""
        if not svc.blobs.has(sha256):
            raise NotFound(f"There is no blob {sha256} on this Server.")
        path = svc.blobs.path(sha256)
        answer, length = serve_blob(path, request)
        meters.downloaded_bytes.inc(length)
        return answer

    # ---- Managers ----------------------------------------------------------------------------

    # async: a sync may be held (wait_s) until there is something for the Manager; only a
    # coroutine waits meanwhile, the database work runs in the thread pool.
    @app.post("/api/v1/manager/sync")
    async def manager_sync(
        req: wire.ManagerSync, manager: AnyManager, request: Request, svc: Services, meters: Meters
    ) -> wire.ManagerSyncReply:
        started = time.perf_counter()
        reply = await svc.leases.sync_waiting(manager, req, gone=request.is_disconnected)
        meters.synced(req, reply, time.perf_counter() - started)
        reply.metrics_tokens = await request.app.state.metrics_tokens.for_sync()
        return reply

    @app.post("/api/v1/manager/updates", responses=error_answers(503))
    def manager_updates(
        batch: wire.UpdateBatch, manager: AnyManager, svc: Services, meters: Meters
    ) -> wire.UpdatesApplied:
        applied = svc.leases.apply_updates(manager, batch.updates)
        meters.updates_received(batch.updates)
        return wire.UpdatesApplied(applied=applied)

    @app.put(
        "/api/v1/manager/tasks/{task_id}/frames/{frame}",
        status_code=201,
        openapi_extra=STREAMED_BODY,
        responses=error_answers(409, 416, 507),
    )
    async def manager_frame(
        task_id: str,
        frame: int,
        request: Request,
        manager: AnyManager,
        svc: Services,
        meters: Meters,
        filename: Annotated[str, Query(max_length=300)],
        x_flamenco_sha256: Annotated[str, Header()],
    ) -> wire.FrameInfo:
        started = time.perf_counter()
        body = await upload_body(request, svc.blobs, x_flamenco_sha256, f"manager {manager.name}")
        if isinstance(body, Response):
            return body  # type: ignore[return-value]
        info = await svc.jobs.receive_frame(
            manager.id, task_id, frame, filename, x_flamenco_sha256, body.chunks
        )
        meters.uploaded("frame", info.size, time.perf_counter() - started)
        return info

    # `:path`: an artifact's name is its path in the job's folder (cache/fluid_0001.vdb).
    @app.put(
        "/api/v1/manager/tasks/{task_id}/artifacts/{name:path}",
        status_code=201,
        openapi_extra=STREAMED_BODY,
        responses=error_answers(409, 416, 507),
    )
    async def manager_artifact(
        task_id: str,
        name: str,
        request: Request,
        manager: AnyManager,
        svc: Services,
        meters: Meters,
        x_flamenco_sha256: Annotated[str, Header()],
    ) -> wire.ArtifactInfo:
        started = time.perf_counter()
        body = await upload_body(request, svc.blobs, x_flamenco_sha256, f"manager {manager.name}")
        if isinstance(body, Response):
            return body  # type: ignore[return-value]
        info = await svc.jobs.receive_artifact(
            manager.id, task_id, name, x_flamenco_sha256, body.chunks
        )
        meters.uploaded("artifact", info.size, time.perf_counter() - started)
        return info
