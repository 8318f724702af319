"""The Manager's own tables: its Workers and the tasks it holds leases for."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import String, Text
from sqlalchemy.orm import Mapped, mapped_column

from flamenco.db import Base, utcnow


class WorkerRow(Base):
    __tablename__ = "workers"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    status: Mapped[str] = mapped_column(String(32), default="starting")
    info: Mapped[dict[str, Any]] = mapped_column(default=dict)
    current_task: Mapped[str | None] = mapped_column(String(32), default=None)
    cancel: Mapped[list[Any]] = mapped_column(default=list)
    last_seen: Mapped[datetime] = mapped_column(default=utcnow)
    wanted: Mapped[str] = mapped_column(String(16), default="awake")  # set by operators
    stats: Mapped[dict[str, Any]] = mapped_column(default=dict)


class HeldTask(Base):
    """A task leased from the Server: queued here until a Worker takes it."""

    __tablename__ = "held_tasks"
    seq: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    task_id: Mapped[str] = mapped_column(String(32), unique=True)
    job_id: Mapped[str] = mapped_column(String(32), index=True)
    priority: Mapped[int]
    lease: Mapped[dict[str, Any]]
    state: Mapped[str] = mapped_column(String(16), default="queued")  # queued | assigned
    worker_id: Mapped[str | None] = mapped_column(String(32), default=None)
    progress: Mapped[float] = mapped_column(default=0.0)
    activity: Mapped[str] = mapped_column(Text, default="")


class SeenUpdate(Base):
    __tablename__ = "seen_updates"
    update_id: Mapped[str] = mapped_column(String(64), primary_key=True)
