"""The state of one Dashboard process and the data its pages show: jobs, a job, pages of its
tasks, its timeline and frames, shaped from the Server's answers and shared by all sessions
for a short while (`upstream.py`'s cache); the pages rendered with Jinja2."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
from collections.abc import Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

from flamenco import __version__
from flamenco.client import ApiError, Unreachable, api_path
from flamenco.config import DashboardSettings
from flamenco.core.actions import ActionNotAllowed, plan_job_action
from flamenco.core.actions import JobAction as CoreAction
from flamenco.core.compiler import output_format_label
from flamenco.core.frames import format_frame_range
from flamenco.core.runs import last_run_seconds, parse_time
from flamenco.core.states import JobStatus
from flamenco.dashboard.sessions import Session, SessionStore
from flamenco.dashboard.timing import job_timing, runs_of, timeline_svg
from flamenco.dashboard.upstream import JobCache, StartTimes, Upstream

log = logging.getLogger("flamenco.dashboard")

HERE = Path(__file__).parent
STATIC = HERE / "static"
TASK_PAGE = 100  # rows the job page shows at once (job.js asks for as many)
FRAME_PAGE = 48  # thumbnails the job page shows at once (job.js asks for as many)
# The timeline draws the runs of a job's last tasks to start, at most this many: a studio's
# job of 100,000 tasks would be too many bars to read, and too long to draw.
TIMELINE_TASKS = 1000
ALL_JOBS = "*"  # the cache's key for the list of jobs
STALE_S = 120.0  # an answer this old may still be shown while a fresh one is fetched


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
        now = now_utc()
        rows = [self._job_row(j, now) for j in jobs]
        unknown = [j for j in jobs if self.starts.needs_check(j)][:20]
        if unknown:
            self.in_background(self._learn_starts(s, unknown))
        return {"jobs": rows, "now": now.isoformat(), "fresh": fresh and not unknown}

    async def job(self, s: Session, job_id: str) -> dict[str, Any]:
        """One job with its artifacts; `fresh` as in `jobs`."""

        async def build() -> tuple[dict[str, Any], list[dict[str, Any]]]:
            job, artifacts = await asyncio.gather(
                self.upstream.json(s.token, api_path("jobs", job_id)),
                self.upstream.json(s.token, api_path("jobs", job_id, "artifacts")),
            )
            return job, artifacts

        # Not the job's frames (100,000 of them for a studio's job): the Server says their
        # extensions, which is all the format needs.
        (job, artifacts), fresh = await self.cache.get_soon(job_id, "job", build, STALE_S)
        row = self._job_row(job, now_utc())  # a start not known yet comes with the tasks
        row["settings"] = job.get("settings", {})
        row["output_format"] = output_format_label(
            row["settings"], job.get("frame_extensions") or []
        )
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
        if "started" in job:  # the Server says (else a page of its tasks does, _learn_starts)
            self.starts.record(job, job["started"] and parse_time(job["started"]))
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
        """The picture of the runs of the job's last TIMELINE_TASKS tasks to start (all of a
        smaller job's; see timing.py), from shared runs; `fresh` as in `jobs`."""

        async def build() -> tuple[list[Any], dict[str, str]]:
            answer = await self.upstream.json(
                s.token, api_path("jobs", job_id, "runs"), params={"last": TIMELINE_TASKS}
            )
            self._learn_start(job_id, answer["started"])
            names = {r["task_id"]: r["task_name"] for r in answer["runs"]}
            return runs_of(answer["runs"]), names

        (runs, names), fresh = await self.cache.get_soon(job_id, "runs", build, STALE_S)
        return timeline_svg(runs, names, now_utc()), fresh

    def _learn_start(self, job_id: str, started: str | None) -> None:
        if started is not None:
            self.starts.known[job_id] = parse_time(started)

    async def frames(
        self, s: Session, job_id: str, offset: int = 0, limit: int = FRAME_PAGE
    ) -> tuple[dict[str, Any], bool]:
        """One page of a job's frames as its thumbnails need them, with how many it has (a
        studio's job has 100,000: never all of them), shared by all sessions; `fresh` as in
        `jobs`."""
        params = {"offset": offset, "limit": limit}

        async def build() -> dict[str, Any]:
            path = api_path("jobs", job_id, "frames", "page")
            page = await self.upstream.json(s.token, path, params=params)
            frames = [
                {
                    "frame": f["frame"],
                    "name": f["filename"],
                    "width": f["width"],
                    "height": f["height"],
                    "v": f["sha256"][:12],
                }
                for f in page["frames"]
            ]
            return {"total": page["total"], "offset": page["offset"], "frames": frames}

        return await self.cache.get_soon(job_id, f"frames?{urlencode(params)}", build, STALE_S)

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
