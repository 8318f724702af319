"""The Server's HTTP layer: thin routes over the services."""

from __future__ import annotations

import asyncio
import contextlib
import pathlib
import time
from collections.abc import AsyncIterator
from typing import Annotated, Literal

from fastapi import Depends, FastAPI, Header, Path, Query, Request, Security
from fastapi.responses import FileResponse, PlainTextResponse, Response, StreamingResponse

from flamenco import wire
from flamenco.apidoc import (
    ARTIFACT_TYPES,
    FRAME_TYPES,
    MANAGER_TOKEN_SCHEME,
    STREAMED_BODY,
    USER_TOKEN_SCHEME,
    BearerToken,
    body_answer,
    error_answers,
)
from flamenco.blobs import is_sha256
from flamenco.core import media
from flamenco.core.actions import JobAction
from flamenco.errors import BadRequest, Forbidden, NotFound
from flamenco.resumable import (
    Incomplete,
    receive_upload,
    serve_blob,
    sweep_partials,
    upload_body,
    upload_offset,
)
from flamenco.server.frame_views import frame_view
from flamenco.server.health import health_check
from flamenco.server.metrics import install_metrics
from flamenco.server.models import ManagerRow, User
from flamenco.server.notify_delivery import NotificationSender
from flamenco.server.notify_routes import install_notify_routes
from flamenco.server.retention import JobRetention
from flamenco.server.services import ServerServices
from flamenco.web import RouteLimits, create_app

Sha = Annotated[str, Path(pattern=r"^[0-9a-f]{64}$")]
WorkerAction = Literal["sleep", "wake", "disable", "enable"]
WORKER_STATES = {"sleep": "asleep", "wake": "awake", "disable": "disabled", "enable": "awake"}
# The routes that stream a file in, and so may take more than a JSON body (see RouteLimits).
UPLOAD_ROUTES = (
    ("PUT", "/api/v1/blobs/{sha256}"),
    ("PUT", "/api/v1/manager/tasks/{task_id}/frames/{frame}"),
    ("PUT", "/api/v1/manager/tasks/{task_id}/artifacts/{name:path}"),
)


def services(request: Request) -> ServerServices:
    return request.app.state.services


Services = Annotated[ServerServices, Depends(services)]


USER_TOKEN = BearerToken(USER_TOKEN_SCHEME, "A user's token, from POST /api/v1/login.")
MANAGER_TOKEN = BearerToken(
    MANAGER_TOKEN_SCHEME, "A Manager's token (flm_...), from POST /api/v1/managers."
)
UserToken = Annotated[str | None, Security(USER_TOKEN)]
ManagerToken = Annotated[str | None, Security(MANAGER_TOKEN)]


def current_user(token: UserToken, svc: Services) -> User:
    return svc.auth.user_for_token(token)


def current_manager(request: Request, token: ManagerToken, svc: Services) -> ManagerRow:
    address = request.client.host if request.client else ""
    return svc.auth.manager_for_token(token, address)


# Both schemes read the same header; naming both documents the route as open to either.
def user_or_manager(
    request: Request, token: UserToken, _manager_token: ManagerToken, svc: Services
) -> str:
    if token and token.startswith("flm_"):
        return current_manager(request, token, svc).name
    return current_user(token, svc).name


def uploader(
    request: Request, token: UserToken, _manager_token: ManagerToken, svc: Services
) -> str:
    """Whose uploads these are: each user and each Manager resumes its own (resumable.py)."""
    if token and token.startswith("flm_"):
        return f"manager {current_manager(request, token, svc).name}"
    return f"user {current_user(token, svc).name}"


AnyUser = Annotated[User, Depends(current_user)]
AnyManager = Annotated[ManagerRow, Depends(current_manager)]


def job_file(path: pathlib.Path, filename: str) -> FileResponse:
    """A frame or artifact: shown if it is an image or video, else a download (core/media.py)."""
    media_type, disposition = media.file_type(filename)
    return FileResponse(
        path,
        media_type=media_type,
        filename=filename,
        content_disposition_type=disposition,
        headers=media.NOSNIFF,
    )


def create_server_app(svc: ServerServices) -> FastAPI:
    limit_for = RouteLimits(UPLOAD_ROUTES, svc.settings.max_upload_bytes)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        svc.events.bind(asyncio.get_running_loop())
        stop = asyncio.Event()  # --keep-days: old finished jobs go, at start and hourly
        retention = JobRetention(svc.jobs.sessions, svc.jobs, svc.settings.keep_days)
        pruning = asyncio.create_task(retention.run(stop, svc.settings.retention_interval_s))
        sender = NotificationSender(svc.jobs.sessions, svc.settings)  # notify_delivery.py
        notifying = asyncio.create_task(sender.run(stop))
        sweeping = asyncio.create_task(sweep_partials(svc.blobs, stop))
        yield
        stop.set()
        await pruning
        await notifying
        await sweeping

    app = create_app(
        "Flamenco Server", limit_for=limit_for, lifespan=lifespan, health=health_check(svc)
    )
    app.state.services = svc
    meters = install_metrics(app, svc, current_user)  # /metrics, metrics tokens
    install_notify_routes(app, svc.jobs.sessions, current_user)  # the notification secret

    @app.post("/api/v1/login", responses=error_answers(401, 429))
    def login(req: wire.LoginRequest, request: Request, svc: Services) -> wire.TokenIssued:
        # The client's address; behind the Dashboard (or a proxy on this machine) the one it
        # forwards in X-Forwarded-For (uvicorn trusts that from FORWARDED_ALLOW_IPS only).
        address = request.client.host if request.client else ""
        token = svc.auth.login(req.username, req.password, address)
        return wire.TokenIssued(token=token, name=req.username)

    # ---- users (Dashboard work) ---------------------------------------------------------------

    @app.post("/api/v1/logout", status_code=204)
    def logout(token: UserToken, _: AnyUser, svc: Services) -> None:
        """Revoke the token this request is made with."""
        svc.auth.logout(token or "")

    @app.get("/api/v1/tokens")
    def list_tokens(
        token: UserToken,
        user: AnyUser,
        svc: Services,
        everyone: Annotated[bool, Query(alias="all")] = False,
    ) -> list[wire.TokenInfo]:
        """The caller's live tokens; with all=true (administrators), every user's."""
        return svc.auth.tokens(user, token or "", everyone=everyone)

    @app.delete("/api/v1/tokens/{token_id}", status_code=204)
    def revoke_token(token_id: int, user: AnyUser, svc: Services) -> None:
        svc.auth.revoke_token(user, token_id)

    @app.get("/api/v1/users/me")
    def who_am_i(user: AnyUser) -> wire.UserInfo:
        return wire.UserInfo(name=user.name, admin=user.is_admin)

    @app.post("/api/v1/users", status_code=201)
    def create_user(req: wire.UserCreate, user: AnyUser, svc: Services) -> wire.UserInfo:
        if not user.is_admin:
            raise Forbidden("Only an administrator can add users.")
        svc.auth.create_user(req.name, req.password, admin=req.admin)
        return wire.UserInfo(name=req.name, admin=req.admin)

    @app.put("/api/v1/users/{name}/password", status_code=204)
    def change_password(
        name: str, req: wire.PasswordChange, token: UserToken, user: AnyUser, svc: Services
    ) -> None:
        svc.auth.change_password(user, name, req.password, token or "")

    @app.delete("/api/v1/users/{name}", status_code=204, responses=error_answers(409))
    def remove_user(name: str, user: AnyUser, svc: Services) -> None:
        svc.auth.remove_user(user, name)

    # ---- end of users --------------------------------------------------------------------------

    @app.post("/api/v1/managers")
    def create_manager(req: wire.ManagerCreate, user: AnyUser, svc: Services) -> wire.TokenIssued:
        if not user.is_admin:
            raise Forbidden("Only an administrator can add Managers.")
        return wire.TokenIssued(token=svc.auth.create_manager(req.name), name=req.name)

    @app.post("/api/v1/managers/{name}/rotate")
    def rotate_manager(name: str, user: AnyUser, svc: Services) -> wire.TokenIssued:
        """A new token for the Manager; the old one stops working at once."""
        if not user.is_admin:
            raise Forbidden("Only an administrator can replace a Manager's token.")
        return wire.TokenIssued(token=svc.auth.rotate_manager(name), name=name)

    @app.post("/api/v1/managers/{name}/revoke", status_code=204, responses=error_answers(409))
    def revoke_manager(name: str, user: AnyUser, svc: Services) -> None:
        if not user.is_admin:
            raise Forbidden("Only an administrator can revoke a Manager's token.")
        svc.auth.revoke_manager(name)

    @app.get(
        "/api/v1/events",
        response_class=StreamingResponse,
        responses=body_answer("text/event-stream") | error_answers(404),
    )
    def events(
        _: AnyUser,
        svc: Services,
        job: Annotated[
            str | None, Query(max_length=200, description="Only the events of this job.")
        ] = None,
    ) -> StreamingResponse:
        """Server-sent events naming what changed: job, task, frame, log, managers. The stream
        begins with the comment `: connected` once it is subscribed."""
        if job is not None:
            svc.jobs.get(job)  # a job that does not exist: 404 and its sentence
        headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        return StreamingResponse(
            svc.events.stream(job), media_type="text/event-stream", headers=headers
        )

    @app.post("/api/v1/managers/{manager}/workers/{worker}/{action}")
    def worker_action(
        manager: str, worker: str, action: WorkerAction, user: AnyUser, svc: Services
    ) -> dict[str, str]:
        if not user.is_admin:
            raise Forbidden("Only an administrator can put Workers to sleep or wake them.")
        state = WORKER_STATES[action]
        svc.leases.set_worker_state(manager, worker, state)
        return {"status": state}

    @app.get("/api/v1/managers")
    def list_managers(_: AnyUser, svc: Services) -> list[wire.ManagerInfo]:
        return svc.leases.managers()

    # ---- Blender add-on (src/flamenco/addon): public, like any download page ----------------

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
    async def upload_blob(sha256: Sha, request: Request, user: AnyUser, svc: Services) -> dict:
        started = time.perf_counter()
        try:
            body = await receive_upload(request, svc.blobs, sha256, f"user {user.name}")
        except Incomplete as incomplete:
            return incomplete.answer  # type: ignore[return-value]
        if body is None:
            size = await svc.blob_gc.upload_completed(sha256, f"user {user.name}")
        else:
            size = await svc.blob_gc.upload(sha256, body)
        meters.uploaded("blob", size, time.perf_counter() - started)
        return {"sha256": sha256, "size": size}

    @app.get("/api/v1/blobs/{sha256}/upload")
    def blob_upload_offset(
        sha256: Sha, who: Annotated[str, Depends(uploader)], svc: Services
    ) -> wire.UploadOffset:
        """How much of this user's or Manager's upload of the blob (or of a frame or artifact
        with that hash) the Server keeps: where to resume it."""
        return upload_offset(svc.blobs, sha256, who)

    @app.get(
        "/api/v1/blobs/{sha256}",
        dependencies=[Depends(user_or_manager)],
        response_class=FileResponse,
        responses={**body_answer("application/octet-stream"), **error_answers(416)},
    )
    def download_blob(sha256: Sha, request: Request, svc: Services) -> FileResponse:
        """The blob; `Range: bytes=N-` resumes a dropped download (206)."""
        if not svc.blobs.has(sha256):
            raise NotFound(f"There is no blob {sha256} on this Server.")
        path = svc.blobs.path(sha256)
        answer, length = serve_blob(path, request)
        meters.downloaded_bytes.inc(length)
        return answer

    # ---- jobs --------------------------------------------------------------------------------

    @app.post("/api/v1/jobs", status_code=201, responses=error_answers(415))
    def submit_job(sub: wire.JobSubmission, user: AnyUser, svc: Services) -> wire.Job:
        return svc.jobs.submit(sub, submitter=user.name)

    @app.get("/api/v1/jobs")
    def list_jobs(_: AnyUser, svc: Services) -> list[wire.Job]:
        return svc.jobs.list()

    @app.get("/api/v1/jobs/{job_id}")
    def get_job(job_id: str, _: AnyUser, svc: Services) -> wire.Job:
        return svc.jobs.get(job_id)

    # Before the route of the other actions, whose {action} would take this one too.
    @app.post("/api/v1/jobs/{job_id}/unblock")
    def job_unblock(job_id: str, req: wire.JobUnblock, user: AnyUser, svc: Services) -> wire.Job:
        return svc.jobs.unblock(job_id, req.worker, user)

    @app.post("/api/v1/jobs/{job_id}/{action}")
    def job_action(job_id: str, action: JobAction, user: AnyUser, svc: Services) -> wire.Job:
        return svc.jobs.act(job_id, action, user)

    @app.put("/api/v1/jobs/{job_id}/priority")
    def job_priority(
        job_id: str, change: wire.PriorityChange, user: AnyUser, svc: Services
    ) -> wire.Job:
        return svc.jobs.set_priority(job_id, change.priority, user)

    @app.delete("/api/v1/jobs/{job_id}", status_code=204)
    def delete_job(job_id: str, user: AnyUser, svc: Services) -> None:
        svc.jobs.delete(job_id, user)

    @app.get("/api/v1/jobs/{job_id}/tasks")
    def job_tasks(job_id: str, _: AnyUser, svc: Services) -> list[wire.Task]:
        return svc.jobs.tasks(job_id)

    @app.get("/api/v1/jobs/{job_id}/tasks/page")
    def job_task_page(
        job_id: str,
        _: AnyUser,
        svc: Services,
        offset: int = 0,
        limit: int = 100,
        status: str = "",
        search: str = "",
    ) -> wire.TaskPage:
        """Some of a job's tasks, in their order; see `JobService.task_page`."""
        return svc.jobs.task_page(job_id, offset, limit, status, search)

    @app.get("/api/v1/jobs/{job_id}/runs")
    def job_runs(job_id: str, _: AnyUser, svc: Services) -> wire.JobRuns:
        return svc.jobs.runs(job_id)

    @app.get("/api/v1/jobs/{job_id}/tasks/{task_id}/log", response_class=PlainTextResponse)
    def task_log(job_id: str, task_id: str, _: AnyUser, svc: Services) -> str:
        return svc.jobs.task_log(job_id, task_id)

    @app.get("/api/v1/jobs/{job_id}/history")
    def job_history(job_id: str, _: AnyUser, svc: Services) -> list[wire.TaskEvent]:
        return svc.jobs.history(job_id)

    @app.get("/api/v1/jobs/{job_id}/frames")
    def job_frames(job_id: str, _: AnyUser, svc: Services) -> list[wire.FrameInfo]:
        return svc.jobs.frames(job_id)

    @app.get(
        "/api/v1/jobs/{job_id}/frames/{frame}",
        response_class=FileResponse,
        responses=body_answer(*FRAME_TYPES),
    )
    def frame_file(job_id: str, frame: int, _: AnyUser, svc: Services) -> FileResponse:
        path, filename = svc.jobs.frame_file(job_id, frame)
        return job_file(path, filename)

    @app.get(
        "/api/v1/jobs/{job_id}/frames/{frame}/thumbnail",
        response_class=FileResponse,
        responses=body_answer("image/jpeg"),
    )
    def frame_thumbnail(job_id: str, frame: int, _: AnyUser, svc: Services) -> FileResponse:
        path = svc.jobs.thumbnail(job_id, frame)
        return FileResponse(path, media_type="image/jpeg", headers=media.NOSNIFF)

    @app.get(
        "/api/v1/jobs/{job_id}/frames/{frame}/view",
        response_class=FileResponse,
        responses=body_answer(*media.BROWSER_IMAGE_TYPES),
    )
    def frame_view_file(job_id: str, frame: int, _: AnyUser, svc: Services) -> FileResponse:
        """The frame as a browser shows it: itself, or a JPEG made from it (an EXR's beauty)."""
        path, media_type = frame_view(svc.jobs, job_id, frame)
        return FileResponse(path, media_type=media_type, headers=media.NOSNIFF)

    @app.get("/api/v1/jobs/{job_id}/artifacts")
    def job_artifacts(job_id: str, _: AnyUser, svc: Services) -> list[wire.ArtifactInfo]:
        return svc.jobs.artifacts(job_id)

    @app.get(
        "/api/v1/jobs/{job_id}/artifacts/{name}",
        response_class=FileResponse,
        responses=body_answer(*ARTIFACT_TYPES),
    )
    def artifact_file(job_id: str, name: str, _: AnyUser, svc: Services) -> FileResponse:
        return job_file(svc.jobs.artifact_file(job_id, name), name)

    # ---- Managers ----------------------------------------------------------------------------

    # async: a sync may be held (wait_s) until there is something for the Manager; only a
    # coroutine waits meanwhile, the database work runs in the thread pool.
    @app.post("/api/v1/manager/sync")
    async def manager_sync(
        req: wire.ManagerSync, manager: AnyManager, request: Request, svc: Services
    ) -> wire.ManagerSyncReply:
        started = time.perf_counter()
        reply = await svc.leases.sync_waiting(manager, req, gone=request.is_disconnected)
        meters.synced(req, reply, time.perf_counter() - started)
        reply.metrics_tokens = await request.app.state.metrics_tokens.for_sync()
        return reply

    @app.post("/api/v1/manager/updates", responses=error_answers(503))
    def manager_updates(
        batch: wire.UpdateBatch, manager: AnyManager, svc: Services
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
        filename: Annotated[str, Query(max_length=300)],
        x_flamenco_sha256: Annotated[str, Header()],
    ) -> wire.FrameInfo:
        if not is_sha256(x_flamenco_sha256):
            raise BadRequest("The X-Flamenco-SHA256 header is not a SHA-256 hex digest.")
        started = time.perf_counter()
        body = await upload_body(request, svc.blobs, x_flamenco_sha256, f"manager {manager.name}")
        if isinstance(body, Response):
            return body  # type: ignore[return-value]
        info = await svc.jobs.receive_frame(
            manager.id, task_id, frame, filename, x_flamenco_sha256, body
        )
        meters.uploaded("frame", info.size, time.perf_counter() - started)
        return info

    # `:path` lets a name with a folder in it reach the check, which refuses it with a 400.
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
        x_flamenco_sha256: Annotated[str, Header()],
    ) -> wire.ArtifactInfo:
        if not is_sha256(x_flamenco_sha256):
            raise BadRequest("The X-Flamenco-SHA256 header is not a SHA-256 hex digest.")
        started = time.perf_counter()
        body = await upload_body(request, svc.blobs, x_flamenco_sha256, f"manager {manager.name}")
        if isinstance(body, Response):
            return body  # type: ignore[return-value]
        info = await svc.jobs.receive_artifact(manager.id, task_id, name, x_flamenco_sha256, body)
        meters.uploaded("artifact", info.size, time.perf_counter() - started)
        return info

    return app
