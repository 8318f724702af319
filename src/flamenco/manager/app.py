"""The Manager's HTTP layer for its Workers, and its start-up wiring."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hmac
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, FastAPI, Header, Path, Query, Request, Security
from fastapi.responses import FileResponse, Response

from flamenco import wire
from flamenco.aio import Gone, TurnWriter
from flamenco.apidoc import (
    MANAGER_TOKEN_SCHEME,
    STREAMED_BODY,
    WORKER_TOKEN_SCHEME,
    BearerToken,
    body_answer,
    error_answers,
)
from flamenco.blob_cache import BoundedBlobStore
from flamenco.client import AsyncApi
from flamenco.config import ManagerSettings
from flamenco.discovery import ManagerAnnouncer
from flamenco.errors import Unauthorized
from flamenco.manager.join_secret import JoinSecret
from flamenco.manager.metrics import ManagerMeters, install_metrics
from flamenco.manager.service import ManagerService
from flamenco.manager.store import ManagerStore, WorkerState
from flamenco.manager.upstream import ServerLink
from flamenco.outbox import Outbox
from flamenco.resumable import serve_blob, sweep_partials, upload_body, upload_offset
from flamenco.security import bearer_token, token_hash
from flamenco.web import RouteLimits, create_app, parse_json

log = logging.getLogger("flamenco.manager")
Sha = Annotated[str, Path(pattern=r"^[0-9a-f]{64}$")]
# The routes that stream a file in, and so may take more than a JSON body (see RouteLimits).
UPLOAD_ROUTES = (
    ("PUT", "/api/v1/worker/tasks/{task_id}/frames/{frame}"),
    ("PUT", "/api/v1/worker/tasks/{task_id}/artifacts/{name:path}"),
)
UPLOAD_LIMIT = 50 * 1024**3  # a frame or a preview video; the Server has the farm's own limit


@dataclass
class Manager:
    service: ManagerService
    link: ServerLink


def build_manager(settings: ManagerSettings) -> Manager:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    joining = JoinSecret(settings.secret, settings.data_dir)
    settings.secret = joining.current()  # the one it starts with, printed at start
    writer = TurnWriter()  # state and outbox written in the same turn: one wait per answer
    outbox = Outbox(settings.data_dir / "outbox.sqlite", writer)
    server = AsyncApi(
        settings.server,
        settings.token,
        ca_bundle=settings.ca_bundle,
        transfer_stall_s=settings.transfer_stall_s,
    )
    # Bounded: least recently used blobs go, never those of held tasks or of the outbox.
    blobs = BoundedBlobStore(
        settings.data_dir / "blobs", settings.cache_size, owner=f"Manager {settings.name}"
    )
    service = ManagerService(
        settings,
        ManagerStore(settings.data_dir / "manager.sqlite", writer),
        blobs,
        outbox,
        server,
        worker_timeout_s=settings.worker_timeout_s,
        join_secret=joining,
    )
    blobs.pins = service.needed_blobs
    link = ServerLink(service, server, outbox, settings.sync_interval_s, ManagerMeters())
    return Manager(service, link)


# Dependencies are async so that FastAPI calls them in the loop, not in its thread pool.
async def _service(request: Request) -> ManagerService:
    return request.app.state.manager.service


Service = Annotated[ManagerService, Depends(_service)]


WORKER_TOKEN = BearerToken(
    WORKER_TOKEN_SCHEME, "A Worker's token, from POST /api/v1/workers/register."
)
MANAGER_TOKEN = BearerToken(MANAGER_TOKEN_SCHEME, "This Manager's own token on its Server.")


async def current_worker(
    token: Annotated[str | None, Security(WORKER_TOKEN)], svc: Service
) -> WorkerState:
    return svc.authenticate_worker(token)


async def this_managers_token(
    token: Annotated[str | None, Security(MANAGER_TOKEN)], svc: Service
) -> None:
    if not hmac.compare_digest(token_hash(token or ""), token_hash(svc.settings.token)):
        raise Unauthorized("The status needs this Manager's Server token.")


AnyWorker = Annotated[WorkerState, Depends(current_worker)]


def create_manager_app(manager: Manager) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        stop = asyncio.Event()
        link_task = asyncio.create_task(manager.link.run(stop))
        sweeping = asyncio.create_task(sweep_partials(manager.service.blobs, stop))
        announcer = ManagerAnnouncer(manager.service.settings)
        await announcer.start()
        yield
        await announcer.stop()
        stop.set()
        await link_task
        await sweeping
        await manager.service.server.close()
        manager.service.store.close()
        manager.service.outbox.close()

    limit_for = RouteLimits(UPLOAD_ROUTES, UPLOAD_LIMIT)
    meters = manager.link.meters

    async def sync(headers: dict[bytes, bytes], body: bytes, gone: Gone) -> bytes:
        """POST /api/v1/worker/sync (body: WorkerSync, reply: WorkerSyncReply), the busiest
        route: served before the framework (RawJsonRoutes)."""
        svc, started = manager.service, time.perf_counter()
        authorization = headers.get(b"authorization", b"").decode("latin-1")
        worker = svc.authenticate_worker(bearer_token(authorization))
        request = parse_json(body, wire.WorkerSync)
        reply = await svc.worker_sync(worker, request, gone)
        answer = reply.model_dump_json().encode()
        meters.worker_synced(
            request.wait_s, time.perf_counter() - started, reply.assignment is not None
        )
        return answer

    app = create_app(
        "Flamenco Manager",
        limit_for=limit_for,
        raw_routes={("POST", "/api/v1/worker/sync"): sync},
        lifespan=lifespan,
    )
    app.state.manager = manager
    install_metrics(app, manager)  # /metrics

    # A Worker registering again sends the token it has: that lets it keep its name.
    @app.post("/api/v1/workers/register", responses=error_answers(401, 409))
    async def register(
        reg: wire.WorkerRegistration,
        token: Annotated[str | None, Security(WORKER_TOKEN)],
        svc: Service,
    ) -> wire.WorkerRegistered:
        return await svc.register_worker(reg, token)

    # Never reached: RawJsonRoutes answers this path first (see `sync` above), with the same
    # service call. It puts the route, its models and its token in the OpenAPI document.
    @app.post("/api/v1/worker/sync")
    async def worker_sync(
        req: wire.WorkerSync, worker: AnyWorker, svc: Service
    ) -> wire.WorkerSyncReply:
        return await svc.worker_sync(worker, req)

    # async: it wakes the Server link, an asyncio event that only the loop's thread may set.
    @app.post("/api/v1/worker/updates")
    async def updates(
        batch: wire.UpdateBatch, worker: AnyWorker, svc: Service
    ) -> wire.UpdatesApplied:
        applied = svc.apply_worker_updates(worker, batch.updates)
        await svc.saved()
        return wire.UpdatesApplied(applied=applied)

    @app.put(
        "/api/v1/worker/tasks/{task_id}/frames/{frame}",
        status_code=201,
        openapi_extra=STREAMED_BODY,
        responses=error_answers(409, 416, 507),  # 507: the disk is full (errors.writing)
    )
    async def frame(
        task_id: str,
        frame: int,
        request: Request,
        worker: AnyWorker,
        svc: Service,
        filename: Annotated[str, Query(max_length=300)],
        x_flamenco_sha256: Annotated[str, Header()],
    ) -> dict:
        body = await upload_body(request, svc.blobs, x_flamenco_sha256, f"worker {worker.id}")
        if isinstance(body, Response):
            return body  # type: ignore[return-value]
        await svc.receive_frame(worker, task_id, frame, filename, x_flamenco_sha256, body)
        return {"sha256": x_flamenco_sha256}

    # `:path`: an artifact's name is its path in the job's folder (cache/fluid_0001.vdb).
    @app.put(
        "/api/v1/worker/tasks/{task_id}/artifacts/{name:path}",
        status_code=201,
        openapi_extra=STREAMED_BODY,
        responses=error_answers(409, 416, 507),  # 507: the disk is full (errors.writing)
    )
    async def artifact(
        task_id: str,
        name: str,
        request: Request,
        worker: AnyWorker,
        svc: Service,
        x_flamenco_sha256: Annotated[str, Header()],
    ) -> dict:
        body = await upload_body(request, svc.blobs, x_flamenco_sha256, f"worker {worker.id}")
        if isinstance(body, Response):
            return body  # type: ignore[return-value]
        await svc.receive_artifact(worker, task_id, name, x_flamenco_sha256, body)
        return {"sha256": x_flamenco_sha256}

    @app.get("/api/v1/blobs/{sha256}/upload")
    async def upload_offset_of(sha256: Sha, worker: AnyWorker, svc: Service) -> wire.UploadOffset:
        """How much of this Worker's upload of a frame or artifact with this hash the Manager
        keeps: where to resume it (`Content-Range: bytes N-*/TOTAL` on the PUT)."""
        return upload_offset(svc.blobs, sha256, f"worker {worker.id}")

    @app.get(
        "/api/v1/blobs/{sha256}",
        dependencies=[Depends(current_worker)],
        response_class=FileResponse,
        responses={**body_answer("application/octet-stream"), **error_answers(416, 503)},
    )
    async def blob(sha256: Sha, request: Request, svc: Service) -> FileResponse:
        """The blob, from the cache; `Range: bytes=N-` resumes a dropped download (206)."""
        answer, _ = serve_blob(await svc.blob_path(sha256), request)
        return answer

    @app.get("/api/v1/status", dependencies=[Depends(this_managers_token)])
    async def status(svc: Service) -> dict:
        return {
            "name": svc.settings.name,
            "server_online": manager.link.online,
            "held_tasks": len(svc.held_ids()),
            "outbox": len(svc.outbox),
            "set_aside": svc.outbox.set_aside_count(),  # refused for good by the Server
            "blob_downloads": svc.blob_downloads,
            # bytes that crossed from and to the Server, and how often a transfer resumed
            "transfers": dataclasses.asdict(svc.server.transfers),
            "cache_bytes": svc.blobs.bytes_used,  # of its bound, cache_size
            "workers": [w.model_dump() for w in svc.workers()],
        }

    return app
