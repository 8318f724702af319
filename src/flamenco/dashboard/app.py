"""The Dashboard's HTTP layer: pages (Jinja2), the JSON they need, and the live event relay.

Pages live at `/`, `/jobs/{id}`, `/machines` and `/login`; what their scripts fetch lives
under `/ui/`. Every `/ui/` answer comes from the Server's API, called with the session's own
token, so the Server decides what each user may see and do; the Dashboard only shapes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import re
from collections.abc import AsyncIterator, Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import parse_qs, quote, urlencode

import httpx
from fastapi import Depends, FastAPI, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, select_autoescape
from pydantic import BaseModel, Field
from starlette.background import BackgroundTask
from starlette.responses import RedirectResponse, StreamingResponse

from flamenco import __version__
from flamenco.client import ApiError, Unreachable, api_path
from flamenco.config import DashboardSettings
from flamenco.core.actions import ActionNotAllowed, plan_job_action
from flamenco.core.actions import JobAction as CoreAction
from flamenco.core.compiler import output_format_label
from flamenco.core.frames import format_frame_range
from flamenco.core.media import relayed_file_headers
from flamenco.core.runs import last_run_seconds, parse_time
from flamenco.core.states import JobStatus
from flamenco.dashboard.archive import stream_zip
from flamenco.dashboard.headers import SecurityHeaders
from flamenco.dashboard.sessions import COOKIE, Session, SessionStore
from flamenco.dashboard.timing import job_timing, runs_of, timeline_svg
from flamenco.dashboard.upstream import JobCache, StartTimes, Upstream
from flamenco.errors import BadRequest, Forbidden, Unauthorized
from flamenco.web import create_app

log = logging.getLogger("flamenco.dashboard")

HERE = Path(__file__).parent
STATIC = HERE / "static"
WORKER_ACTIONS = ("sleep", "wake", "disable", "enable")
SSE_RETRY_MS = 1500
MAX_TASK_PAGE = 500
TASK_PAGE = 100  # rows the job page shows at once (job.js asks for as many)
ALL_JOBS = "*"  # the cache's key for the list of jobs
STALE_S = 120.0  # an answer this old may still be shown while a fresh one is fetched
JobAction = Literal["pause", "resume", "cancel", "requeue", "requeue-failed", "delete"]


class LoginRequired(Exception):
    """A page was asked for without a live session: go to the login page."""


class BulkAction(BaseModel):
    ids: list[str] = Field(min_length=1, max_length=1000)
    action: JobAction


class BulkPriority(BaseModel):
    ids: list[str] = Field(min_length=1, max_length=1000)
    priority: int = Field(ge=0, le=100)


def now_utc() -> datetime:
    return datetime.now(UTC)


def static_version() -> str:
    """Changes whenever a static file does, so browsers never run stale scripts."""
    digest = hashlib.sha256()
    for path in sorted(STATIC.rglob("*")):
        if path.is_file():
            digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()[:10]


def embed_json(value: Any) -> str:
    """JSON safe inside a <script> element."""
    text = json.dumps(value, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def allowed_actions(status: str) -> list[str]:
    """What can be done to a job in this status (the Server's own rules); delete always."""
    allowed = []
    for action in CoreAction:
        with contextlib.suppress(ActionNotAllowed, ValueError):
            plan_job_action(action, JobStatus(status))
            allowed.append(action.value)
    return [*allowed, "delete"]


async def read_form(request: Request) -> dict[str, str]:
    """A posted HTML form's fields (the first value of each); BadRequest with the reason for
    a body that is not a form in UTF-8."""
    kind = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        raise BadRequest("The request is not a form (application/x-www-form-urlencoded).")
    try:
        fields = parse_qs((await request.body()).decode(), errors="strict", max_num_fields=20)
    except UnicodeDecodeError as exc:
        raise BadRequest("The form is not valid UTF-8.") from exc
    except ValueError as exc:
        raise BadRequest("The form has too many fields.") from exc
    return {name: values[0] for name, values in fields.items()}


def safe_next(target: str | None) -> str:
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/"


class Dashboard:
    """State of one Dashboard process: sessions, the Server client, shared short-lived data."""

    def __init__(self, settings: DashboardSettings) -> None:
        self.settings = settings
        self.sessions = SessionStore(idle_s=settings.session_idle_s)
        self.upstream = Upstream(settings.server, ca_bundle=settings.ca_bundle)
        self.cache = JobCache()
        self.starts = StartTimes()
        self.background: set[asyncio.Future[Any]] = set()
        self.templates = Environment(
            loader=FileSystemLoader(HERE / "templates"),
            autoescape=select_autoescape(["html"]),
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.templates.filters["embed_json"] = embed_json
        self.static_version = static_version()

    # ---- data the pages need -------------------------------------------------------------------

    async def jobs(self, s: Session) -> dict[str, Any]:
        """Every job, as rows for the jobs page; `fresh` is false for an answer given from the
        cache while a newer one is fetched, or while starts are looked up (the page asks
        again a moment later)."""
        jobs, fresh = await self.cache.get_soon(
            ALL_JOBS, "list", lambda: self.upstream.json(s.token, "/api/v1/jobs"), STALE_S
        )
        unknown = [j for j in jobs if self.starts.needs_check(j)][:20]
        if unknown:
            self.in_background(self._learn_starts(s, unknown))
        now = now_utc()
        rows = [self._job_row(j, now) for j in jobs]
        return {"jobs": rows, "now": now.isoformat(), "fresh": fresh and not unknown}

    async def job(self, s: Session, job_id: str) -> dict[str, Any]:
        """One job with its artifacts; `fresh` as in `jobs`."""

        async def build() -> tuple[dict[str, Any], list[dict[str, Any]]]:
            job, artifacts = await asyncio.gather(
                self.upstream.json(s.token, api_path("jobs", job_id)),
                self.upstream.json(s.token, api_path("jobs", job_id, "artifacts")),
            )
            return job, artifacts

        ((job, artifacts), fresh), (frames, _) = await asyncio.gather(
            self.cache.get_soon(job_id, "job", build, STALE_S), self.frames(s, job_id)
        )
        row = self._job_row(job, now_utc())  # a start not known yet comes with the tasks
        row["settings"] = job.get("settings", {})
        row["output_format"] = output_format_label(row["settings"], (f["name"] for f in frames))
        row["output_dir"] = job.get("output_dir", "")
        row["blocklist"] = job.get("blocklist", [])
        row["artifacts"] = [{"name": a["name"], "size": a["size"]} for a in artifacts]
        row["fresh"] = fresh
        return row

    async def _learn_starts(self, s: Session, jobs: list[dict[str, Any]]) -> None:
        """Find when jobs started: an empty page of their tasks says (see timing.py)."""

        async def learn(job: dict[str, Any]) -> None:
            with contextlib.suppress(ApiError, Unreachable):
                page = await self.upstream.json(
                    s.token, api_path("jobs", job["id"], "tasks", "page"), params={"limit": 0}
                )
                self.starts.record(job, page["started"] and parse_time(page["started"]))

        await asyncio.gather(*(learn(job) for job in jobs))

    def _job_row(self, job: dict[str, Any], now: datetime) -> dict[str, Any]:
        started = self.starts.get(job["id"])
        elapsed, eta = job_timing(job, started, now)
        return {
            key: job.get(key)
            for key in (
                "id",
                "name",
                "type",
                "status",
                "priority",
                "submitter",
                "sites",
                "frames_done",
                "frames_total",
                "tasks_completed",
                "tasks_total",
                "progress",
                "created",
                "updated",
                "waiting_reason",
            )
        } | {
            "elapsed_s": elapsed,
            "eta_s": eta,
            "started": started and started.isoformat(),
            "actions": allowed_actions(job["status"]),
        }

    async def task_page(
        self, s: Session, job_id: str, offset: int, limit: int, status: str, q: str
    ) -> tuple[dict[str, Any], bool]:
        """One page of a job's tasks (the Server pages, counts and filters them) as slim rows
        with their last run's duration, shared by all sessions; `fresh` as in `jobs`."""
        params = {"offset": offset, "limit": limit, "status": status, "search": q}

        async def build() -> dict[str, Any]:
            path = api_path("jobs", job_id, "tasks", "page")
            return self._task_rows(job_id, await self.upstream.json(s.token, path, params=params))

        return await self.cache.get_soon(job_id, f"tasks?{urlencode(params)}", build, STALE_S)

    def _task_rows(self, job_id: str, page: dict[str, Any]) -> dict[str, Any]:
        self._learn_start(job_id, page["started"])
        runs = runs_of(page["runs"])
        now = now_utc()
        seconds = last_run_seconds(runs, now)
        running = {r.task_id: r.start.isoformat() for r in runs if r.end is None}
        rows = [
            {
                "id": t["id"],
                "index": t["index"],
                "name": t["name"],
                "type": t["type"],
                "status": t["status"],
                "frames": format_frame_range(t["frames"]) if t["frames"] else "",
                "progress": t["progress"],
                "activity": t["activity"],
                "worker": t["worker"],
                "manager": t["manager"],
                "failures": t["failure_count"],
                "seconds": seconds.get(t["id"]),
                "running_since": running.get(t["id"]),
            }
            for t in page["tasks"]
        ]
        keep = ("total", "matching", "counts", "offset")
        return {key: page[key] for key in keep} | {"tasks": rows, "at": now.isoformat()}

    async def timeline(self, s: Session, job_id: str) -> tuple[str, bool]:
        """The picture of every run of the job's tasks (see timing.py), from shared runs;
        `fresh` as in `jobs`."""

        async def build() -> tuple[list[Any], dict[str, str]]:
            answer = await self.upstream.json(s.token, api_path("jobs", job_id, "runs"))
            self._learn_start(job_id, answer["started"])
            names = {r["task_id"]: r["task_name"] for r in answer["runs"]}
            return runs_of(answer["runs"]), names

        (runs, names), fresh = await self.cache.get_soon(job_id, "runs", build, STALE_S)
        return timeline_svg(runs, names, now_utc()), fresh

    def _learn_start(self, job_id: str, started: str | None) -> None:
        if started is not None:
            self.starts.known[job_id] = parse_time(started)

    async def frames(self, s: Session, job_id: str) -> tuple[list[dict[str, Any]], bool]:
        async def build() -> list[dict[str, Any]]:
            frames = await self.upstream.json(s.token, api_path("jobs", job_id, "frames"))
            return [
                {
                    "frame": f["frame"],
                    "name": f["filename"],
                    "width": f["width"],
                    "height": f["height"],
                    "v": f["sha256"][:12],
                }
                for f in frames
            ]

        return await self.cache.get_soon(job_id, "frames", build, STALE_S)

    def prefetch(self, s: Session, job_id: str) -> None:
        """Start fetching a job's first page of tasks, its timeline and its frames now; the
        page's requests for them join these fetches."""
        self.in_background(self.task_page(s, job_id, 0, TASK_PAGE, "", ""))
        self.in_background(self.timeline(s, job_id))
        self.in_background(self.frames(s, job_id))

    def in_background(self, work: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.ensure_future(work)
        self.background.add(task)
        task.add_done_callback(self._background_done)

    def _background_done(self, task: asyncio.Future[Any]) -> None:
        self.background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.debug("background fetch failed: %s", task.exception())

    def relay_event(self, kind: str, data: str) -> None:
        """Forget what an event from the Server says has changed."""
        if kind not in ("job", "task", "frame", "log"):
            return
        try:
            payload = json.loads(data)
        except ValueError:
            return
        job_id = payload.get("job_id") or (payload.get("id") if kind == "job" else None)
        if isinstance(job_id, str):
            self.cache.invalidate(job_id)
        if kind in ("job", "task"):
            self.cache.invalidate(ALL_JOBS)

    # ---- pages ---------------------------------------------------------------------------------

    def render(
        self, request: Request, name: str, status: int = 200, **context: Any
    ) -> HTMLResponse:
        session: Session | None = getattr(request.state, "session", None)
        template = self.templates.get_template(name)
        html = template.render(
            session=session,
            version=__version__,
            static_version=self.static_version,
            path=request.url.path,
            **context,
        )
        return HTMLResponse(html, status_code=status, headers={"Cache-Control": "no-store"})


# ---- who is asking: the session named by the cookie ------------------------------------------


def session_of(request: Request) -> Session | None:
    dash: Dashboard = request.app.state.dashboard
    session = dash.sessions.get(request.cookies.get(COOKIE))
    request.state.session = session
    return session


def page_session(request: Request) -> Session:
    session = session_of(request)
    if session is None:
        raise LoginRequired()
    return session


def ui_session(request: Request) -> Session:
    session = session_of(request)
    if session is None:
        dash: Dashboard = request.app.state.dashboard
        if dash.sessions.was_logged_out(request.cookies.get(COOKIE)):
            raise Unauthorized("You logged out of this Dashboard session; log in again.")
        raise Unauthorized("You are not logged in to the Dashboard, or your login expired.")
    return session


def changing_session(request: Request) -> Session:
    """For requests that change something: they must carry the page's CSRF token too."""
    session = ui_session(request)
    if request.headers.get("x-csrf-token") != session.csrf:
        raise Forbidden("The request lacks this page's CSRF token; reload the page.")
    return session


PageSession = Annotated[Session, Depends(page_session)]
UiSession = Annotated[Session, Depends(ui_session)]
ChangingSession = Annotated[Session, Depends(changing_session)]


# ---- the app -------------------------------------------------------------------------------------


def create_dashboard_app(settings: DashboardSettings) -> FastAPI:
    dash = Dashboard(settings)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await dash.upstream.close()

    app = create_app(
        "Flamenco Dashboard",
        lifespan=lifespan,
        health=dash.upstream.server_problem,
        docs_url=None,
        redoc_url=None,
    )
    app.state.dashboard = dash
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.add_middleware(SecurityHeaders)

    # ---- errors: pages go to the login or an error page, /ui/ answers in JSON --------------------

    @app.exception_handler(LoginRequired)
    async def _login_required(request: Request, _: LoginRequired) -> Response:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?next={quote(target)}", status_code=303)

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> Response:
        session: Session | None = getattr(request.state, "session", None)
        if exc.status == 401 and session is not None:
            dash.sessions.drop(session.id)  # the Server no longer takes its token
            request.state.session = None
        return _failure(request, exc.status, exc.message)

    @app.exception_handler(Unreachable)
    async def _unreachable(request: Request, exc: Unreachable) -> Response:
        return _failure(request, 502, str(exc))

    def _failure(request: Request, status: int, message: str) -> Response:
        if request.url.path.startswith("/ui/"):
            return JSONResponse({"detail": message}, status_code=status)
        if status == 401:
            return RedirectResponse(f"/login?next={quote(request.url.path)}", status_code=303)
        return dash.render(request, "error.html", status=status, message=message, code=status)

    # ---- login ---------------------------------------------------------------------------------

    @app.get("/login", response_class=HTMLResponse)
    def login_page(request: Request, next: str = "/") -> Response:
        if session_of(request) is not None:
            return RedirectResponse(safe_next(next), status_code=303)
        return dash.render(request, "login.html", next=safe_next(next), error=None, username="")

    @app.post("/login", response_class=HTMLResponse)
    async def login(request: Request) -> Response:
        try:
            form = await read_form(request)
        except BadRequest as exc:
            return dash.render(
                request, "login.html", status=400, next="/", error=exc.message, username=""
            )
        username = form.get("username", "").strip()
        password = form.get("password", "")
        target = safe_next(form.get("next"))
        if not username or not password:
            return dash.render(
                request,
                "login.html",
                status=400,
                next=target,
                error="Enter your user name and password.",
                username=username,
            )
        try:
            address = request.client.host if request.client else ""
            token = await dash.upstream.login(username, password, address)
            me = await dash.upstream.json(token, "/api/v1/users/me")
        except ApiError as exc:
            status = 401 if exc.status in (401, 422) else exc.status
            message = "The user name or password is wrong." if status == 401 else exc.message
            refused = dash.render(
                request, "login.html", status=status, next=target, error=message, username=username
            )
            if exc.retry_after:  # too many failed logins: when to try again
                refused.headers["Retry-After"] = exc.retry_after
            return refused
        except Unreachable as exc:
            return dash.render(
                request, "login.html", status=502, next=target, error=str(exc), username=username
            )
        _, cookie = dash.sessions.create(me.get("name", username), token, bool(me.get("admin")))
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(
            COOKIE,
            cookie,
            httponly=True,
            samesite="lax",
            secure=request.url.scheme == "https",
            max_age=int(settings.session_idle_s),
        )
        return response

    @app.post("/logout")
    async def logout(request: Request) -> Response:
        # No CSRF token needed: ending a session is what its owner wants whoever asks, and
        # a page of another site cannot send the SameSite=Lax cookie along anyway.
        session = session_of(request)
        if session is not None:
            dash.sessions.log_out(session.id)
            try:  # its token on the Server ends with it
                await dash.upstream.request(session.token, "POST", "/api/v1/logout")
            except (ApiError, Unreachable) as exc:
                log.warning(
                    "logout of %s: the Server did not revoke its token: %s", session.user, exc
                )
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(COOKIE)
        return response

    # ---- pages ---------------------------------------------------------------------------------

    @app.get("/", response_class=HTMLResponse)
    async def jobs_page(request: Request, s: PageSession) -> Response:
        return dash.render(request, "jobs.html", data=await dash.jobs(s), title="Jobs")

    @app.get("/jobs/{job_id}", response_class=HTMLResponse)
    async def job_page(request: Request, job_id: str, s: PageSession) -> Response:
        job = await dash.job(s, job_id)
        dash.prefetch(s, job_id)  # the page's script asks for them next
        return dash.render(request, "job.html", job=job, title=job["name"])

    @app.get("/machines", response_class=HTMLResponse)
    async def machines_page(request: Request, s: PageSession) -> Response:
        managers = await dash.upstream.json(s.token, "/api/v1/managers")
        data = {"managers": managers, "admin": s.admin, "now": now_utc().isoformat()}
        return dash.render(request, "machines.html", data=data, title="Machines")

    # ---- jobs (JSON for the pages' scripts) ---------------------------------------------------

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
    async def ui_frames(job_id: str, s: UiSession) -> dict[str, Any]:
        frames, fresh = await dash.frames(s, job_id)
        return {"frames": frames, "fresh": fresh}

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

    @app.get("/ui/jobs/{job_id}/artifacts/{name}")
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

    return app
