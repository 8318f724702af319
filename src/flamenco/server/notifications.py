"""Notifications of a job's end: what is queued when a job completes, fails or is canceled,
and the secret that signs them. Sending is `notify_delivery.py`.

The door for status changes (`transitions.set_job_status`) calls `queue_job_end` in the
transaction that moves the job to its final status, so a notification exists exactly when
that change was written. It queues one `Notification` row per URL: the job's own (--notify)
and the Server's `notify_url`. The Server's policy (those URLs and its public addresses) rides
on the sessions' `info` (`install_policy`), so the door needs no settings of its own.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, object_session, sessionmaker

from flamenco import wire
from flamenco.config import DEFAULT_DASHBOARD_PORT, BadSetting, ServerSettings
from flamenco.core.notify import BadNotifyUrl, check_notify_url, url_for_log
from flamenco.core.states import JobStatus
from flamenco.db import utcnow
from flamenco.netaddr import public_host, service_url
from flamenco.server.models import JobRow, Notification, OutputRow, ServerSecret

log = logging.getLogger("flamenco.server.notifications")

POLICY_KEY = "flamenco.notify_policy"
SECRET_NAME = "notify"


@dataclass(frozen=True)
class NotifyPolicy:
    notify_url: str  # every job's end goes here too; "" none
    api_url: str  # the Server's address for other machines
    dashboard_url: str

    @classmethod
    def of(cls, settings: ServerSettings) -> NotifyPolicy:
        """The policy of the settings: a Dashboard not given is on the Server's public host at
        its default port, as `flamenco up` runs it (and the add-on assumes)."""
        if settings.notify_url:
            try:
                check_notify_url(settings.notify_url)
            except BadNotifyUrl as exc:
                raise BadSetting(f"notify_url: {exc}") from None
        host = public_host(settings.host, "")
        scheme = "https" if settings.tls_cert else "http"
        dashboard = settings.dashboard_url or service_url(scheme, host, DEFAULT_DASHBOARD_PORT)
        return cls(
            notify_url=settings.notify_url,
            api_url=service_url(scheme, host, settings.port),
            dashboard_url=dashboard.rstrip("/"),
        )


def install_policy(sessions: sessionmaker, policy: NotifyPolicy) -> None:
    """Make `policy` what every session of `sessions` queues notifications by."""
    sessions.configure(info={**sessions.kw.get("info", {}), POLICY_KEY: policy})


def queue_job_end(job: JobRow) -> list[Notification]:
    """Queue the notifications of `job`, which has just entered a final status, in its
    session's transaction; none when neither the job nor the Server has a URL."""
    s = object_session(job)
    if s is None:
        return []
    policy: NotifyPolicy | None = s.info.get(POLICY_KEY)
    urls = [job.notify_url, policy.notify_url if policy else ""]
    urls = list(dict.fromkeys(url for url in urls if url))
    if not urls:
        return []
    body = job_ended(s, job, policy).model_dump_json()
    queued = [Notification(job_id=job.id, url=url, body=body) for url in urls]
    s.add_all(queued)
    log.info(
        "job %s %s: notification queued for %s",
        job.id,
        job.status,
        ", ".join(url_for_log(url) for url in urls),
        extra={"job": job.id},
    )
    return queued


def job_ended(s: Session, job: JobRow, policy: NotifyPolicy | None) -> wire.JobEnded:
    frames = sorted(s.scalars(select(OutputRow.frame).where(OutputRow.job_id == job.id)))
    api = policy.api_url if policy else ""
    dashboard = policy.dashboard_url if policy else ""
    return wire.JobEnded(
        job_id=job.id,
        name=job.name,
        status=JobStatus(job.status),
        submitter=job.submitter,
        frames_done=len(frames),
        frames_total=job.frames_total,
        frames=frames,
        frames_url=f"{api}/api/v1/jobs/{job.id}/frames",
        dashboard_url=f"{dashboard}/jobs/{job.id}",
        ended=utcnow(),
    )


def notify_secret(sessions: sessionmaker, rotate: bool = False) -> wire.NotifySecret:
    """The key notifications are signed with, made at first need; `rotate` replaces it (the
    deliveries still pending are signed with the new one)."""
    for _ in range(2):  # a concurrent first use may win the insert: read what it made
        try:
            with sessions.begin() as s:
                row = s.get(ServerSecret, SECRET_NAME)
                if row is None or rotate:
                    row = row or ServerSecret(name=SECRET_NAME)
                    row.value, row.created = secrets.token_urlsafe(32), utcnow()
                    s.add(row)
                    log.info("notification secret %s", "rotated" if rotate else "made")
                return wire.NotifySecret(secret=row.value, created=row.created)
        except IntegrityError:
            continue
    raise RuntimeError("the notification secret could not be made")
