"""The Server's /metrics: what its routes count and time, and its state read at scrape time
(jobs and tasks by status, each site's Workers by status, how long ago each Manager synced,
the data folder's disk). Names and meanings: docs/monitoring/README.md."""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Callable, Iterable
from typing import Annotated

import psutil
from fastapi import Depends, FastAPI, Security
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from prometheus_client.core import Metric
from sqlalchemy import func, select

from flamenco import wire
from flamenco.apidoc import METRICS_TOKEN_SCHEME, BearerToken, body_answer, error_answers
from flamenco.core.states import JobStatus, TaskStatus
from flamenco.db import utcnow
from flamenco.metrics import (
    HELD,
    LATENCY_BUCKETS,
    UPLOAD_BUCKETS,
    StateCollector,
    gauge,
    held_label,
    metrics_response,
    single_gauge,
)
from flamenco.server.metrics_tokens import MetricsTokens
from flamenco.server.models import JobRow, TaskRow, User
from flamenco.server.services import ServerServices


class ServerMetrics:
    """The registry of one Server app, with the meters its routes update."""

    def __init__(self, svc: ServerServices) -> None:
        self.svc = svc
        self.registry = CollectorRegistry()
        r = self.registry
        self.sync_seconds = Histogram(
            "flamenco_server_manager_sync_seconds",
            "Time to answer a Manager's sync; held='yes' for long polls, which wait for work.",
            ["held"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.upload_seconds = Histogram(
            "flamenco_server_upload_seconds",
            "Time to receive an upload: blob (a submitter's), frame or artifact (a Manager's).",
            ["kind"],
            buckets=UPLOAD_BUCKETS,
            registry=r,
        )
        self.uploaded_bytes = Counter(
            "flamenco_server_uploaded_bytes",
            "Bytes uploaded to the Server: blobs, frames, artifacts.",
            ["kind"],
            registry=r,
        )
        self.downloaded_bytes = Counter(
            "flamenco_server_downloaded_bytes",
            "Bytes of blobs downloaded from the Server (by Managers and users).",
            registry=r,
        )
        self.leases = Counter(
            "flamenco_server_leases", "Tasks leased (assigned) to Managers.", registry=r
        )
        self.failure_reports = Counter(
            "flamenco_server_task_failure_reports",
            "Reports of a failed task received from Managers (a resent report counts again).",
            registry=r,
        )
        # Every series exists from the start; the sync's children are looked up once
        # (labels() costs more than the observe itself).
        self._sync = {held: self.sync_seconds.labels(held) for held in HELD}
        for kind in ("blob", "frame", "artifact"):
            self.upload_seconds.labels(kind)
            self.uploaded_bytes.labels(kind)
        r.register(StateCollector(self.state))

    # ---- what the routes tell -----------------------------------------------------------------

    def synced(self, req: wire.ManagerSync, reply: wire.ManagerSyncReply, seconds: float) -> None:
        self._sync[held_label(req.wait_s)].observe(seconds)
        if reply.leases:
            self.leases.inc(len(reply.leases))

    def updates_received(self, updates: list[wire.TaskUpdate]) -> None:
        failed = sum(1 for u in updates if u.status == TaskStatus.FAILED)
        if failed:
            self.failure_reports.inc(failed)

    def uploaded(self, kind: str, size: int, seconds: float) -> None:
        self.upload_seconds.labels(kind).observe(seconds)
        self.uploaded_bytes.labels(kind).inc(size)

    # ---- read at scrape time ------------------------------------------------------------------

    def state(self) -> Iterable[Metric]:
        with self.svc.jobs.sessions() as s:
            jobs = dict(
                s.execute(select(JobRow.status, func.count()).group_by(JobRow.status)).all()
            )
            tasks = dict(
                s.execute(select(TaskRow.status, func.count()).group_by(TaskRow.status)).all()
            )
        yield gauge(
            "flamenco_server_jobs",
            "Jobs by status.",
            ("status",),
            {(str(st),): jobs.get(str(st), 0) for st in JobStatus},
        )
        yield gauge(
            "flamenco_server_tasks",
            "Tasks by status.",
            ("status",),
            {(str(st),): tasks.get(str(st), 0) for st in TaskStatus},
        )
        yield from self._sites()
        disk = psutil.disk_usage(str(self.svc.settings.data_dir))
        yield single_gauge(
            "flamenco_server_disk_free_bytes", "Free disk of the data folder.", disk.free
        )
        yield single_gauge(
            "flamenco_server_disk_total_bytes", "Size of the data folder's disk.", disk.total
        )

    def _sites(self) -> Iterable[Metric]:
        """Each Manager (site): online or not, seconds since its last sync, its Workers."""
        now = utcnow()
        workers: Tally[tuple[str, str]] = Tally()
        online: dict[tuple[str], float] = {}
        age: dict[tuple[str], float] = {}
        for manager in self.svc.leases.managers():
            if manager.status == "revoked":
                continue
            online[(manager.name,)] = 1.0 if manager.status == "online" else 0.0
            if manager.last_seen is not None:
                age[(manager.name,)] = (now - manager.last_seen).total_seconds()
            for worker in manager.workers:  # as it last reported them
                workers[(manager.name, worker.status)] += 1
        yield gauge(
            "flamenco_server_manager_online",
            "1 while the Manager (site) syncs, 0 once it has been silent too long.",
            ("site",),
            online,
        )
        yield gauge(
            "flamenco_server_manager_last_sync_age_seconds",
            "Seconds since the Manager's last sync.",
            ("site",),
            age,
        )
        yield gauge(
            "flamenco_server_workers",
            "Workers by site and status, as their Manager last reported them.",
            ("site", "status"),
            dict(workers),
        )


METRICS_TOKEN = BearerToken(
    METRICS_TOKEN_SCHEME, "A read-only metrics token, from POST /api/v1/metrics/tokens."
)


def install_metrics(
    app: FastAPI, svc: ServerServices, current_user: Callable[..., User]
) -> ServerMetrics:
    """/metrics and the door that makes metrics tokens, on the Server's app; `current_user`
    is its dependency for a user's token."""
    meters = ServerMetrics(svc)
    tokens = MetricsTokens(svc.jobs.sessions)
    app.state.metrics, app.state.metrics_tokens = meters, tokens

    @app.get(
        "/metrics",
        response_class=Response,
        responses={**body_answer(CONTENT_TYPE_LATEST), **error_answers(403)},
    )
    def metrics(token: Annotated[str | None, Security(METRICS_TOKEN)]) -> Response:
        """The Server's metrics in Prometheus' text format; needs a metrics token."""
        tokens.check(token)
        return metrics_response(meters.registry)

    @app.post("/api/v1/metrics/tokens")
    def make_metrics_token(user: User = Depends(current_user)) -> wire.TokenIssued:
        """A new read-only metrics token (administrators only), accepted by the Server's and
        every Manager's /metrics and by nothing else."""
        return wire.TokenIssued(token=tokens.issue(user), name=user.name)

    return meters
