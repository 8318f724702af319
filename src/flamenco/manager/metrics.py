"""The Manager's /metrics: what it counts and times where it happens (`ManagerMeters`: its
Workers' syncs and assignments, its syncs with the Server and its uploads to it), and its state
read at scrape time (Workers by status, held tasks, outbox, cache, disk). Names and meanings:
docs/monitoring/README.md.

A scrape needs a metrics token of the farm: the Manager knows their hashes from its syncs
(`ServerLink.metrics_tokens`), so it refuses every scrape until it has synced once.
"""

from __future__ import annotations

import hmac
import time
from collections import Counter as Tally
from collections.abc import Iterable
from typing import TYPE_CHECKING, Annotated

import psutil
from fastapi import FastAPI, Security
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, Metric

from flamenco.apidoc import METRICS_TOKEN_SCHEME, BearerToken, body_answer
from flamenco.errors import Unauthorized
from flamenco.metrics import (
    HELD,
    LATENCY_BUCKETS,
    NO_METRICS_TOKEN,
    NOT_A_METRICS_TOKEN,
    UPLOAD_BUCKETS,
    StateCollector,
    gauge,
    held_label,
    metrics_response,
    single_gauge,
)
from flamenco.security import token_hash

if TYPE_CHECKING:
    from flamenco.manager.app import Manager


class ManagerMeters:
    """The registry of one Manager, with the meters updated where things happen."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.worker_sync_seconds = Histogram(
            "flamenco_manager_worker_sync_seconds",
            "Time to answer a Worker's sync; held='yes' for long polls, which wait for a task.",
            ["held"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.assignments = Counter(
            "flamenco_manager_assignments", "Tasks assigned to this Manager's Workers.", registry=r
        )
        self.server_sync_seconds = Histogram(
            "flamenco_manager_server_sync_seconds",
            "Round trip of a sync with the Server; held='yes' when the Server may hold it.",
            ["held"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.upload_seconds = Histogram(
            "flamenco_manager_upload_seconds",
            "Time to upload a frame or an artifact to the Server.",
            ["kind"],
            buckets=UPLOAD_BUCKETS,
            registry=r,
        )
        self.uploaded_bytes = Counter(
            "flamenco_manager_uploaded_bytes",
            "Bytes of frames and artifacts uploaded to the Server.",
            ["kind"],
            registry=r,
        )
        # Every series exists from the start; the hot path's children are looked up once
        # (labels() costs more than the observe itself).
        self._worker_sync = {held: self.worker_sync_seconds.labels(held) for held in HELD}
        for held in HELD:
            self.server_sync_seconds.labels(held)
        for kind in ("frame", "artifact"):
            self.upload_seconds.labels(kind)
            self.uploaded_bytes.labels(kind)
        self.last_server_sync: float | None = None  # time.monotonic() of the last answered sync

    def worker_synced(self, wait_s: float, seconds: float, assigned: bool) -> None:
        """A Worker's sync answered (the Manager's hot path: about 2 µs)."""
        self._worker_sync[held_label(wait_s)].observe(seconds)
        if assigned:
            self.assignments.inc()

    def server_synced(self, wait_s: float, seconds: float) -> None:
        self.server_sync_seconds.labels(held_label(wait_s)).observe(seconds)
        self.last_server_sync = time.monotonic()

    def uploaded(self, kind: str, size: int, seconds: float) -> None:
        self.upload_seconds.labels(kind).observe(seconds)
        self.uploaded_bytes.labels(kind).inc(size)


def manager_state(manager: Manager) -> Iterable[Metric]:
    """The Manager's state now; read in its event loop, where its stores live."""
    svc, link = manager.service, manager.link
    site = svc.settings.name
    statuses: Tally[tuple[str, str]] = Tally((site, w.status) for w in svc.workers())
    yield gauge(
        "flamenco_manager_workers", "Workers by status.", ("site", "status"), dict(statuses)
    )
    yield single_gauge(
        "flamenco_manager_held_tasks", "Tasks held from the Server.", len(svc.held_ids())
    )
    yield single_gauge(
        "flamenco_manager_outbox_items",
        "Frames and updates waiting to go up to the Server.",
        len(svc.outbox),
    )
    yield single_gauge(
        "flamenco_manager_outbox_set_aside_items",
        "Outbox items the Server refused for good.",
        svc.outbox.set_aside_count(),
    )
    yield single_gauge(
        "flamenco_manager_cache_bytes", "Bytes in the blob cache.", svc.blobs.bytes_used
    )
    yield single_gauge(
        "flamenco_manager_cache_limit_bytes",
        "The blob cache's bound (cache_size); 0: unbounded.",
        svc.blobs.cap,
    )
    downloads = CounterMetricFamily(
        "flamenco_manager_downloaded_bytes", "Bytes of blobs downloaded from the Server."
    )
    downloads.add_metric([], svc.blob_download_bytes)
    yield downloads
    yield single_gauge(
        "flamenco_manager_server_online", "1 while the Server answers.", float(link.online)
    )
    last = manager.link.meters.last_server_sync
    if last is not None:
        yield single_gauge(
            "flamenco_manager_last_server_sync_age_seconds",
            "Seconds since the Server last answered a sync.",
            time.monotonic() - last,
        )
    disk = psutil.disk_usage(str(svc.settings.data_dir))
    yield single_gauge(
        "flamenco_manager_disk_free_bytes", "Free disk of the data folder.", disk.free
    )
    yield single_gauge(
        "flamenco_manager_disk_total_bytes", "Size of the data folder's disk.", disk.total
    )


METRICS_TOKEN = BearerToken(
    METRICS_TOKEN_SCHEME, "A metrics token of the farm (flamenco metrics token)."
)


def install_metrics(app: FastAPI, manager: Manager) -> None:
    """/metrics on the Manager's app, in its event loop."""
    meters = manager.link.meters
    meters.registry.register(StateCollector(lambda: manager_state(manager)))

    @app.get(
        "/metrics",
        response_class=Response,
        responses=body_answer(CONTENT_TYPE_LATEST),
    )
    async def metrics(token: Annotated[str | None, Security(METRICS_TOKEN)]) -> Response:
        """The Manager's metrics in Prometheus' text format; needs a metrics token."""
        if not token:
            raise Unauthorized(NO_METRICS_TOKEN)
        hashed = token_hash(token)
        if not any(hmac.compare_digest(hashed, known) for known in manager.link.metrics_tokens):
            raise Unauthorized(NOT_A_METRICS_TOKEN)
        return metrics_response(meters.registry)
