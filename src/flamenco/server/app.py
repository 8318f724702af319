"""The Server's HTTP app: its background tasks and its routes, which are thin layers over the
services. The routes live by concern: `account_routes.py` (people and credentials),
`job_routes.py` (jobs, their files, the event stream), `transfer_routes.py` (blobs, the
add-on, the Managers' side); `deps.py` is what they depend on."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from fastapi import FastAPI

from flamenco.resumable import sweep_partials
from flamenco.server.account_routes import install_account_routes
from flamenco.server.deps import current_user
from flamenco.server.health import health_check
from flamenco.server.job_routes import install_job_routes
from flamenco.server.job_type_routes import install_job_type_routes
from flamenco.server.metrics import install_metrics
from flamenco.server.notify_delivery import NotificationSender
from flamenco.server.notify_routes import install_notify_routes
from flamenco.server.retention import JobRetention
from flamenco.server.services import ServerServices
from flamenco.server.transfer_routes import UPLOAD_ROUTES, install_transfer_routes
from flamenco.web import RouteLimits, create_app


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
    install_metrics(app, svc, current_user)  # /metrics, metrics tokens; app.state.metrics
    install_notify_routes(app, svc.jobs.sessions, current_user)  # the notification secret
    install_account_routes(app)
    install_transfer_routes(app)
    install_job_routes(app)
    install_job_type_routes(app)  # the installed job types
    return app
