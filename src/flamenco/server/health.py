"""Whether the Server can serve (its /healthz): its database answers."""

from __future__ import annotations

import logging

from anyio import to_thread
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from flamenco.server.services import ServerServices
from flamenco.web import HealthCheck

log = logging.getLogger("flamenco.server.health")


def database_problem(svc: ServerServices) -> str | None:
    """A sentence when the database does not answer a trivial query, else None."""
    try:
        with svc.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        log.warning("health check: the database does not answer: %s", exc)
        return f"The Server's database cannot be reached ({exc.__class__.__name__})."
    return None


def health_check(svc: ServerServices) -> HealthCheck:
    async def check() -> str | None:
        return await to_thread.run_sync(database_problem, svc)

    return check
