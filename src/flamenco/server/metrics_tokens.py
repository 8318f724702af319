"""Metrics tokens: read-only tokens that open /metrics on the Server and on every Manager, and
nothing else.

A metrics token is a row of `api_tokens` labelled `metrics` (no table of its own): it belongs
to the administrator who made it, is listed and revoked with their other tokens (`flamenco
tokens list`/`revoke`), never expires, and ends with its administrator (removed, or their
password changed). `AuthService.user_for_token` refuses it everywhere else with a 401
(the wrong token for those routes; each route's documented answer for that).

The hashes of the live ones are kept in memory, read again at most every `refresh_s` (at once
after one is issued; a revoked one is refused within `refresh_s`): the Managers get them with
every sync reply, which must not cost a query.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from anyio import to_thread
from sqlalchemy import or_, select
from sqlalchemy.orm import sessionmaker

from flamenco.db import utcnow
from flamenco.errors import Forbidden, Unauthorized
from flamenco.metrics import METRICS_TOKEN_PREFIX, NO_METRICS_TOKEN, NOT_A_METRICS_TOKEN
from flamenco.security import new_token, token_hash
from flamenco.server.models import ApiToken, ManagerRow, User

log = logging.getLogger("flamenco.server.metrics_tokens")

METRICS_LABEL = "metrics"  # the label that makes an api_tokens row a metrics token
METRICS_ONLY = "A metrics token only reads /metrics; use a user's token for this."


class MetricsTokens:
    def __init__(
        self,
        sessions: sessionmaker,
        refresh_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.sessions = sessions
        self.refresh_s = refresh_s
        self.clock = clock
        self._lock = threading.Lock()  # the thread pool's requests share the cache
        self._hashes: frozenset[str] = frozenset()
        self._listed: list[str] = []  # the same, sorted, for the sync replies
        self._read_at = float("-inf")

    def issue(self, by: User) -> str:
        """A new metrics token, made by an administrator; only its hash is kept."""
        if not by.is_admin:
            raise Forbidden("Only an administrator can make a metrics token.")
        token = new_token(METRICS_TOKEN_PREFIX)
        with self.sessions.begin() as s:
            s.add(
                ApiToken(
                    user_id=by.id,
                    token_hash=token_hash(token),
                    label=METRICS_LABEL,
                    created=utcnow(),
                    expires=None,
                )
            )
        self.forget()
        log.info("metrics token made by %s", by.name)
        return token

    def forget(self) -> None:
        """Read the live hashes again at the next use (a metrics token was issued or revoked)."""
        with self._lock:
            self._read_at = float("-inf")

    def _stale(self) -> bool:
        return self.clock() - self._read_at >= self.refresh_s

    async def for_sync(self) -> list[str]:
        """The hashes for a Manager's sync reply (the Server's hot path): from memory; once
        every `refresh_s` they are read on a worker thread, never in the event loop."""
        if self._stale():
            await to_thread.run_sync(self.hashes)
        return self._listed

    def hashes(self) -> frozenset[str]:
        """The hashes of the live metrics tokens, at most `refresh_s` old."""
        with self._lock:
            if not self._stale():
                return self._hashes
        now = utcnow()
        with self.sessions() as s:
            rows = s.scalars(
                select(ApiToken.token_hash).where(
                    ApiToken.label == METRICS_LABEL,
                    ApiToken.user_id.is_not(None),
                    ApiToken.revoked.is_(None),
                    or_(ApiToken.expires.is_(None), ApiToken.expires > now),
                )
            ).all()
        with self._lock:
            self._hashes, self._read_at = frozenset(rows), self.clock()
            self._listed = sorted(self._hashes)
            return self._hashes

    def check(self, token: str | None) -> None:
        """Let a scrape through with a live metrics token: a 401 without one, a 403 with
        another credential of this Server (a user's or a Manager's token)."""
        if not token:
            raise Unauthorized(NO_METRICS_TOKEN)
        hashed = token_hash(token)
        if hashed in self.hashes():
            return
        with self.sessions() as s:
            known = s.scalar(
                select(ApiToken.id).where(
                    ApiToken.token_hash == hashed, ApiToken.label != METRICS_LABEL
                )
            ) or s.scalar(select(ManagerRow.id).where(ManagerRow.token_hash == hashed))
        if known is not None:
            raise Forbidden(NOT_A_METRICS_TOKEN)
        raise Unauthorized(NOT_A_METRICS_TOKEN)
