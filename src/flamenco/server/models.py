"""The Server's tables."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from flamenco.db import Base, utcnow


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    password_hash: Mapped[str] = mapped_column(String(300))
    is_admin: Mapped[bool] = mapped_column(default=False)
    created: Mapped[datetime] = mapped_column(default=utcnow)


class ApiToken(Base):
    """A user's token. Revoked and expired ones are kept a while (see `auth.RETIRED_KEPT`) so
    that their use is answered with what happened to them; a removed user's have no user."""

    __tablename__ = "api_tokens"
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    label: Mapped[str] = mapped_column(String(200), default="")
    created: Mapped[datetime] = mapped_column(default=utcnow)
    expires: Mapped[datetime | None] = mapped_column(default=None)  # None: never
    revoked: Mapped[datetime | None] = mapped_column(default=None)
    last_used: Mapped[datetime | None] = mapped_column(default=None)


class ManagerRow(Base):
    __tablename__ = "managers"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    token_issued: Mapped[datetime] = mapped_column(default=utcnow)
    # The token a rotation replaced, so that its use is answered with that, not "unknown".
    replaced_token_hash: Mapped[str | None] = mapped_column(String(64), default=None, index=True)
    revoked: Mapped[datetime | None] = mapped_column(default=None)
    last_seen: Mapped[datetime | None] = mapped_column(default=None)
    address: Mapped[str] = mapped_column(String(200), default="")
    workers: Mapped[list[Any]] = mapped_column(default=list)
    worker_states: Mapped[dict[str, Any]] = mapped_column(default=dict)  # name -> wanted state


class BlobRow(Base):
    __tablename__ = "blobs"
    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    size: Mapped[int]
    created: Mapped[datetime] = mapped_column(default=utcnow)


class BlobClaim(Base):
    """A blob a submission asked about or uploaded, and when: kept for a while whatever job is
    deleted, so that the submission can still create its job (`server/blob_gc.py`)."""

    __tablename__ = "blob_claims"
    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    claimed_at: Mapped[datetime] = mapped_column(index=True)


class JobRow(Base):
    __tablename__ = "jobs"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    type: Mapped[str] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(32), index=True)
    priority: Mapped[int]
    submitter: Mapped[str] = mapped_column(String(200))
    settings: Mapped[dict[str, Any]]
    files: Mapped[dict[str, Any]]
    sites: Mapped[list[Any]] = mapped_column(default=list)  # for display; JobSite for queries
    output_dir: Mapped[str] = mapped_column(Text)
    frames_total: Mapped[int]
    created: Mapped[datetime] = mapped_column(default=utcnow)
    updated: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    # Where to POST the job's end (--notify), besides the Server's notify_url; "" none.
    notify_url: Mapped[str] = mapped_column(Text, default="")
    # Some job it waits for (--after) has not completed: none of its tasks may be leased.
    # Kept by `server/job_dependencies.py` at each status change, so leasing reads a column.
    waits_for_jobs: Mapped[bool] = mapped_column(default=False)
    # When its first run was reported active (`update_intake.py`); None until then.
    started: Mapped[datetime | None] = mapped_column(default=None)


class JobSite(Base):
    """A site (Manager name) a job may run on; a job without rows may run anywhere."""

    __tablename__ = "job_sites"
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    site: Mapped[str] = mapped_column(String(200), primary_key=True)


class JobDependency(Base):
    """A job that may only start once another has completed (submit --after). `after_job_id` is
    no foreign key: a prerequisite deleted before it completed keeps its dependent waiting."""

    __tablename__ = "job_dependencies"
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    after_job_id: Mapped[str] = mapped_column(String(32), primary_key=True, index=True)


class TaskRow(Base):
    __tablename__ = "tasks"
    __table_args__ = (
        Index("ix_tasks_status_job", "status", "job_id"),
        # A job's tasks of one status in order (the next ones to lease), and its counts by
        # status, without reading every task of a big job.
        Index("ix_tasks_job_status_index", "job_id", "status", "index"),
        # A job's tasks in order (a page of them), and its tasks at all (the foreign key).
        Index("ix_tasks_job_index", "job_id", "index"),
    )
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    index: Mapped[int]
    name: Mapped[str] = mapped_column(String(200))
    type: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(32))
    frames: Mapped[list[Any]]
    command: Mapped[dict[str, Any]]
    depends_on: Mapped[list[Any]] = mapped_column(default=list)
    requirements: Mapped[dict[str, Any]] = mapped_column(default=dict)
    progress: Mapped[float] = mapped_column(default=0.0)
    activity: Mapped[str] = mapped_column(Text, default="")
    manager_id: Mapped[int | None] = mapped_column(ForeignKey("managers.id"), default=None)
    lease_expires: Mapped[datetime | None] = mapped_column(default=None)
    worker: Mapped[str | None] = mapped_column(String(200), default=None)
    blender_pid: Mapped[int | None] = mapped_column(default=None)
    failure_count: Mapped[int] = mapped_column(default=0)
    log_tail: Mapped[str] = mapped_column(Text, default="")
    updated: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class AppliedUpdate(Base):
    """Every update id ever received, so a replayed update changes nothing.

    Those that carry a status are also the task's history: who reported what, when, and
    whether it counted (a late report of a task finished elsewhere is kept, as ignored).
    """

    __tablename__ = "applied_updates"
    update_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    task_id: Mapped[str] = mapped_column(String(32), index=True)
    outcome: Mapped[str] = mapped_column(String(32))
    # Indexed for the blocklist: the few failures among all the updates.
    status: Mapped[str | None] = mapped_column(String(32), default=None, index=True)
    worker: Mapped[str | None] = mapped_column(String(200), default=None)
    manager_id: Mapped[int | None] = mapped_column(default=None)
    received: Mapped[datetime] = mapped_column(default=utcnow)


class OutputRow(Base):
    __tablename__ = "outputs"
    __table_args__ = (UniqueConstraint("job_id", "frame"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    task_id: Mapped[str] = mapped_column(String(32))
    frame: Mapped[int]
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int]
    width: Mapped[int | None] = mapped_column(default=None)
    height: Mapped[int | None] = mapped_column(default=None)
    filename: Mapped[str] = mapped_column(String(300))
    created: Mapped[datetime] = mapped_column(default=utcnow)


class JobArtifact(Base):
    """Another output of a job than its frames (the preview video), one per name."""

    __tablename__ = "job_artifacts"
    __table_args__ = (UniqueConstraint("job_id", "name"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    task_id: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(200))
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int]
    created: Mapped[datetime] = mapped_column(default=utcnow)


class TaskLogChunk(Base):
    """The full log of a task, in the chunks it arrived in; the tail also sits on the task."""

    __tablename__ = "task_logs"
    id: Mapped[int] = mapped_column(primary_key=True)
    task_id: Mapped[str] = mapped_column(String(32), index=True)
    text: Mapped[str] = mapped_column(Text)
    created: Mapped[datetime] = mapped_column(default=utcnow)


class BlocklistClear(Base):
    """A job's blocklist cleared (by a requeue or an unblock), for one Worker or for all
    (worker None): only failures received after it count towards the blocklist again."""

    __tablename__ = "blocklist_clears"
    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    worker: Mapped[str | None] = mapped_column(String(200), default=None)
    cleared: Mapped[datetime] = mapped_column(default=utcnow)


class JobError(Base):
    """The latest error a task of the job failed with, which the job shows its user."""

    __tablename__ = "job_errors"
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    task_id: Mapped[str] = mapped_column(String(32))
    worker: Mapped[str | None] = mapped_column(String(200), default=None)
    fault: Mapped[str | None] = mapped_column(String(16), default=None)
    error: Mapped[str] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(default=utcnow)


class Notification(Base):
    """A job's end to POST to one URL: the outbox of deliveries (`server/notify_delivery.py`).
    Kept after the job is deleted; `delivered` or `given_up` once done with."""

    __tablename__ = "notifications"
    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[str] = mapped_column(String(32), index=True)
    url: Mapped[str] = mapped_column(Text)
    body: Mapped[str] = mapped_column(Text)  # the exact JSON document posted, each attempt
    created: Mapped[datetime] = mapped_column(default=utcnow)
    attempts: Mapped[int] = mapped_column(default=0)
    next_at: Mapped[datetime | None] = mapped_column(default=utcnow, index=True)  # None: done
    last_error: Mapped[str] = mapped_column(Text, default="")
    delivered: Mapped[datetime | None] = mapped_column(default=None)
    given_up: Mapped[datetime | None] = mapped_column(default=None)


class ServerSecret(Base):
    """A secret of the Server's own, by name: "notify" signs notifications."""

    __tablename__ = "server_secrets"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(200))
    created: Mapped[datetime] = mapped_column(default=utcnow)
