"""The Dashboard's HTTP layer: pages (Jinja2), the JSON they need, and the live event relay.

Pages live at `/`, `/jobs/{id}`, `/machines` and `/login`; what their scripts fetch lives
under `/ui/`. Every `/ui/` answer comes from the Server's API, called with the session's own
token, so the Server decides what each user may see and do; the Dashboard only shapes it.
The app is made here with its pages; `login.py` holds who is asking and logging in,
`ui_routes.py` the `/ui/` routes, `views.py` the state and data the pages show.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles

from flamenco.config import DashboardSettings
from flamenco.dashboard.headers import SecurityHeaders
from flamenco.dashboard.login import PageSession, install_login
from flamenco.dashboard.ui_routes import install_ui_routes
from flamenco.dashboard.views import STATIC, Dashboard, now_utc
from flamenco.web import create_app


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

    install_login(app, dash)  # login.py: the error handlers, /login, /logout

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

    install_ui_routes(app, dash)  # ui_routes.py: what the pages' scripts fetch
    return app
