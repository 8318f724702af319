"""What the Dashboard's page scripts fetch, under `/ui/`: jobs and actions on them, a job's
tasks, timeline, frames, files, logs and archive, the machines, and the Server's live events
relayed. Every answer comes from the Server's API with the session's own token."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

import httpx
from fastapi import FastAPI, Query
from fastapi.responses import PlainTextResponse, Response
from pydantic import BaseModel, Field
from starlette.background import BackgroundTask
from starlette.responses import StreamingResponse

from flamenco.client import ApiError, api_path
from flamenco.core.media import relayed_file_headers
from flamenco.dashboard.archive import stream_zip
from flamenco.dashboard.login import ChangingSession, UiSession
from flamenco.dashboard.sessions import Session
from flamenco.dashboard.views import ALL_JOBS, FRAME_PAGE, TASK_PAGE, Dashboard, now_utc
from flamenco.errors import Forbidden

WORKER_ACTIONS = ("sleep", "wake", "disable", "enable")
SSE_RETRY_MS = 1500
MAX_TASK_PAGE = 500
MAX_FRAME_PAGE = 500
JobAction = Literal["pause", "resume", "cancel", "requeue", "requeue-failed", "delete"]


class BulkAction(BaseModel):
    ids: list[str] = Field(min_length=1, max_length=1000)
    action: JobAction


class BulkPriority(BaseModel):
    ids: list[str] = Field(min_length=1, max_length=1000)
    priority: int = Field(ge=0, le=100)


def install_ui_routes(app: FastAPI, dash: Dashboard) -> None:
    """The `/ui/` routes, on the Dashboard's app."""

    @app.get("/ui/jobs")
    async def ui_jobs(s: UiSession) -> dict[str, Any]:
        return await dash.jobs(s)

    @app.post("/ui/jobs/actions")
    async def ui_jobs_act(body: BulkAction, s: ChangingSession) -> dict[str, Any]:
        async def one(job_id: str) -> dict[str, Any]:
            try:
                if body.action == "delete":
                    await dash.upstream.request(s.token, "DELETE", api_path("jobs", job_id))
                    return {"id": job_id, "ok": True, "status": "deleted"}
                response = await dash.upstream.request(
                    s.token, "POST", api_path("jobs", job_id, body.action)
                )
                return {"id": job_id, "ok": True, "status": response.json()["status"]}
            except ApiError as exc:
                if exc.status == 401:
                    raise
                return {"id": job_id, "ok": False, "error": exc.message}
            finally:
                dash.cache.invalidate(job_id)
                dash.cache.invalidate(ALL_JOBS)

        return {"results": [await one(job_id) for job_id in body.ids]}

    @app.put("/ui/jobs/priority")
    async def ui_jobs_priority(body: BulkPriority, s: ChangingSession) -> dict[str, Any]:
        results = []
        for job_id in body.ids:
            try:
                response = await dash.upstream.request(
                    s.token,
                    "PUT",
                    api_path("jobs", job_id, "priority"),
                    json={"priority": body.priority},
                )
                results.append({"id": job_id, "ok": True, "priority": response.json()["priority"]})
            except ApiError as exc:
                if exc.status == 401:
                    raise
                results.append({"id": job_id, "ok": False, "error": exc.message})
        dash.cache.invalidate(ALL_JOBS)
        return {"results": results}

    @app.get("/ui/jobs/{job_id}")
    async def ui_job(job_id: str, s: UiSession) -> dict[str, Any]:
        return await dash.job(s, job_id)

    @app.get("/ui/jobs/{job_id}/tasks")
    async def ui_tasks(
        job_id: str,
        s: UiSession,
        offset: Annotated[int, Query(ge=0)] = 0,
        limit: Annotated[int, Query(ge=1, le=MAX_TASK_PAGE)] = TASK_PAGE,
        status: str = "",
        q: Annotated[str, Query(max_length=200)] = "",
    ) -> dict[str, Any]:
        view, fresh = await dash.task_page(s, job_id, offset, limit, status, q)
        return view | {"fresh": fresh}

    @app.get("/ui/jobs/{job_id}/timeline.svg")
    async def ui_timeline(job_id: str, s: UiSession) -> Response:
        svg, fresh = await dash.timeline(s, job_id)
        headers = {"Cache-Control": "no-store", "X-Fresh": "1" if fresh else "0"}
        return Response(svg, media_type="image/svg+xml", headers=headers)

    @app.get("/ui/jobs/{job_id}/frames")
    async def ui_frames(
        job_id: str,
        s: UiSession,
        offset: Annotated[int, Query(ge=0)] = 0,
        limit: Annotated[int, Query(ge=1, le=MAX_FRAME_PAGE)] = FRAME_PAGE,
    ) -> dict[str, Any]:
        view, fresh = await dash.frames(s, job_id, offset, limit)
        return view | {"fresh": fresh}

    async def _proxy_file(s: Session, path: str, cache: str) -> Response:
        upstream = await dash.upstream.open_stream(s.token, path)
        headers = {"Cache-Control": cache}
        if "content-length" in upstream.headers:
            headers["content-length"] = upstream.headers["content-length"]
        # Images and videos as the Server typed them; anything else only as a download.
        headers |= relayed_file_headers(
            upstream.headers.get("content-type"), upstream.headers.get("content-disposition")
        )
        return StreamingResponse(
            upstream.aiter_raw(), headers=headers, background=BackgroundTask(upstream.aclose)
        )

    @app.get("/ui/jobs/{job_id}/frames/{frame}")
    async def ui_frame(job_id: str, frame: int, s: UiSession, v: str = "") -> Response:
        cache = "private, max-age=86400, immutable" if v else "no-store"
        return await _proxy_file(s, api_path("jobs", job_id, "frames", frame), cache)

    @app.get("/ui/jobs/{job_id}/frames/{frame}/thumbnail")
    async def ui_thumbnail(job_id: str, frame: int, s: UiSession, v: str = "") -> Response:
        cache = "private, max-age=86400, immutable" if v else "no-store"
        path = api_path("jobs", job_id, "frames", frame, "thumbnail")
        return await _proxy_file(s, path, cache)

    @app.get("/ui/jobs/{job_id}/frames/{frame}/view")
    async def ui_frame_view(job_id: str, frame: int, s: UiSession, v: str = "") -> Response:
        cache = "private, max-age=86400, immutable" if v else "no-store"
        return await _proxy_file(s, api_path("jobs", job_id, "frames", frame, "view"), cache)

    # `:path`: an artifact's name is its path in the job's folder (cache/fluid_0001.vdb).
    @app.get("/ui/jobs/{job_id}/artifacts/{name:path}")
    async def ui_artifact(job_id: str, name: str, s: UiSession) -> Response:
        return await _proxy_file(s, api_path("jobs", job_id, "artifacts", name), "no-store")

    @app.get("/ui/jobs/{job_id}/tasks/{task_id}/log", response_class=PlainTextResponse)
    async def ui_task_log(
        job_id: str, task_id: str, s: UiSession, offset: Annotated[int, Query(ge=0)] = 0
    ) -> Response:
        text = (
            await dash.upstream.request(
                s.token, "GET", api_path("jobs", job_id, "tasks", task_id, "log")
            )
        ).text
        if offset > len(text):  # the log started over (the task was requeued)
            offset = 0
            reset = "1"
        else:
            reset = "0"
        return PlainTextResponse(
            text[offset:],
            headers={
                "X-Log-Length": str(len(text)),
                "X-Log-Reset": reset,
                "Cache-Control": "no-store",
            },
        )

    @app.get("/ui/jobs/{job_id}/archive.zip")
    async def ui_archive(job_id: str, s: UiSession) -> Response:
        job, frames, artifacts = await asyncio.gather(
            dash.upstream.json(s.token, api_path("jobs", job_id)),
            dash.upstream.json(s.token, api_path("jobs", job_id, "frames")),
            dash.upstream.json(s.token, api_path("jobs", job_id, "artifacts")),
        )
        folder = re.sub(r"[^A-Za-z0-9_.-]+", "-", job["name"]).strip("-.")[:60] or "job"
        folder = f"{folder}-{job_id}"
        files = [
            (f"{folder}/{f['filename']}", api_path("jobs", job_id, "frames", f["frame"]))
            for f in frames
        ] + [
            (f"{folder}/{a['name']}", api_path("jobs", job_id, "artifacts", a["name"]))
            for a in artifacts
        ]

        async def open_stream(path: str) -> httpx.Response:
            return await dash.upstream.open_stream(s.token, path)

        return StreamingResponse(
            stream_zip(files, open_stream),
            media_type="application/zip",
            headers={
                "Content-Disposition": f'attachment; filename="{folder}.zip"',
                "Cache-Control": "no-store",
            },
        )

    # ---- machines ------------------------------------------------------------------------------

    @app.get("/ui/managers")
    async def ui_managers(s: UiSession) -> dict[str, Any]:
        managers = await dash.upstream.json(s.token, "/api/v1/managers")
        return {"managers": managers, "admin": s.admin, "now": now_utc().isoformat()}

    @app.post("/ui/managers/{manager}/workers/{worker}/{action}")
    async def ui_worker_action(
        manager: str, worker: str, action: str, s: ChangingSession
    ) -> dict[str, Any]:
        if action not in WORKER_ACTIONS:
            raise Forbidden(f"'{action}' is not something a Worker can be told to do.")
        path = api_path("managers", manager, "workers", worker, action)
        return (await dash.upstream.request(s.token, "POST", path)).json()

    # ---- live events ---------------------------------------------------------------------------

    @app.get("/ui/events")
    async def ui_events(s: UiSession) -> Response:
        """The Server's event stream for this session, relayed; see `Dashboard.relay_event`."""
        upstream = await dash.upstream.open_stream(
            s.token, "/api/v1/events", timeout=httpx.Timeout(5.0, read=60.0)
        )

        async def relay() -> AsyncIterator[str]:
            yield f"retry: {SSE_RETRY_MS}\n: relayed by the Flamenco Dashboard\n\n"
            kind, data, lines = "message", "", []
            try:
                async for line in upstream.aiter_lines():
                    lines.append(line)
                    if line.startswith("event:"):
                        kind = line[6:].strip()
                    elif line.startswith("data:"):
                        data += line[5:].strip()
                    elif line == "":
                        if data:
                            dash.relay_event(kind, data)
                        yield "\n".join(lines) + "\n"
                        kind, data, lines = "message", "", []
            except httpx.HTTPError:
                pass  # the Server went away: the browser reconnects after `retry`
            finally:
                await upstream.aclose()

        return StreamingResponse(
            relay(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )
