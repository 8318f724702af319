"""Wiring of the Server's services to its database and folders; used by the app and tests."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import Engine

from flamenco.blobs import BlobStore
from flamenco.config import ServerSettings
from flamenco.db import make_engine, make_sessions, sqlite_url
from flamenco.server.auth import AuthService
from flamenco.server.blob_gc import BlobCollector
from flamenco.server.doorbell import Doorbell
from flamenco.server.events import EventBus
from flamenco.server.job_dependencies import install_events
from flamenco.server.jobs import JobService
from flamenco.server.leases import LeaseService
from flamenco.server.notifications import NotifyPolicy, install_policy
from flamenco.server.schema import upgrade_schema


@dataclass
class ServerServices:
    settings: ServerSettings
    engine: Engine
    auth: AuthService
    jobs: JobService
    leases: LeaseService
    blobs: BlobStore
    blob_gc: BlobCollector
    events: EventBus

    def close(self) -> None:
        self.engine.dispose()


def build_services(settings: ServerSettings) -> ServerServices:
    events = EventBus()
    bell = Doorbell()  # job changes and task updates wake the Managers' waiting syncs
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    url = settings.database_url or sqlite_url(settings.data_dir / "server.sqlite")
    upgrade_schema(url)  # before anything reads a table; refuses a newer database
    engine = make_engine(url)
    sessions = make_sessions(engine)
    install_policy(sessions, NotifyPolicy.of(settings))  # what job ends queue (notifications.py)
    install_events(sessions, events)  # waiting jobs re-evaluated are announced (job_dependencies)
    blobs = BlobStore(settings.data_dir / "blobs", max_blob_bytes=settings.max_upload_bytes)
    blob_gc = BlobCollector(sessions, blobs)
    leases = LeaseService(
        sessions,
        lease_timeout_s=settings.lease_timeout_s,
        max_task_failures=settings.max_task_failures,
        manager_offline_s=settings.manager_offline_s,
        blocklist_threshold=settings.blocklist_threshold,
        events=events,
        max_failed_tasks=settings.max_failed_tasks,
        bell=bell,
    )
    auth = AuthService(
        sessions,
        login_burst=settings.login_burst,
        login_refill_s=settings.login_refill_s,
        token_ttl=timedelta(days=settings.token_ttl_days) if settings.token_ttl_days else None,
        manager_changed=leases.manager_changed,  # the Managers page; a revoked one's tasks
    )
    return ServerServices(
        settings=settings,
        engine=engine,
        auth=auth,
        jobs=JobService(
            sessions,
            blobs,
            blob_gc,
            settings.data_dir / "outputs",
            manager_offline_s=settings.manager_offline_s,
            blocklist_threshold=settings.blocklist_threshold,
            thumbnails_root=settings.data_dir / "thumbnails",
            events=events,
            bell=bell,
        ),
        leases=leases,
        blobs=blobs,
        blob_gc=blob_gc,
        events=events,
    )
