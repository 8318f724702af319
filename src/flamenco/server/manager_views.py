"""The managers' view: every Manager with its Workers as last reported and whether it is
online, and what operators want of a Worker (passed on at its Manager's next sync)."""

from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import sessionmaker

from flamenco import wire
from flamenco.db import utcnow
from flamenco.errors import NotFound
from flamenco.server.doorbell import Doorbell
from flamenco.server.events import EventBus
from flamenco.server.models import ManagerRow

log = logging.getLogger("flamenco.server.manager_views")


class ManagerViews:
    """The managers' side of LeaseService (server/leases.py), which provides these attributes."""

    sessions: sessionmaker
    events: EventBus
    bell: Doorbell
    manager_offline: timedelta

    def set_worker_state(self, manager_name: str, worker: str, state: str) -> None:
        """What operators want of a Worker; its Manager passes it on at its next sync."""
        with self.sessions.begin() as s:
            row = s.scalar(select(ManagerRow).where(ManagerRow.name == manager_name))
            if row is None:
                raise NotFound(f"There is no Manager named '{manager_name}'.")
            if not any(w.get("name") == worker for w in row.workers):
                raise NotFound(f"Manager '{manager_name}' has no Worker named '{worker}'.")
            row.worker_states = {**row.worker_states, worker: state}
        log.info(
            "worker %s of %s: wanted %s", worker, manager_name, state, extra={"worker": worker}
        )
        self.events.publish("managers")
        self.bell.ring()

    def managers(self) -> list[wire.ManagerInfo]:
        """Every Manager with its Workers, as last reported, and whether it is online."""
        cutoff = utcnow() - self.manager_offline
        with self.sessions() as s:
            rows = s.scalars(select(ManagerRow).order_by(ManagerRow.name)).all()
            return [
                wire.ManagerInfo(
                    name=m.name,
                    last_seen=m.last_seen,
                    address=m.address,
                    status="revoked"
                    if m.revoked
                    else "online"
                    if m.last_seen and m.last_seen > cutoff
                    else "offline",
                    workers=wire.worker_summaries(m.workers)[0],
                )
                for m in rows
            ]
