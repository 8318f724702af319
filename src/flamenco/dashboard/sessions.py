"""Logins of the Dashboard: a signed cookie names a session kept in this process's memory.

The session holds the user's API token for the Server; the browser only ever sees the
session id, signed with a key that lives as long as the process (so do the sessions: a
restarted Dashboard asks everyone to log in again). The cookie is HttpOnly, so page
JavaScript cannot read it, and every request that changes something must also carry the
session's CSRF token, which a page of another site cannot know.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field

COOKIE = "flamenco_dashboard"


@dataclass
class Session:
    id: str
    user: str
    token: str  # the user's API token on the Server; never sent to the browser
    admin: bool
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    last_used: float = field(default_factory=time.monotonic)


class SessionStore:
    def __init__(
        self,
        idle_s: float = 12 * 3600.0,
        key: bytes | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.idle_s = idle_s
        self.clock = clock  # tests pass their own to age sessions without waiting
        self.key = key or secrets.token_bytes(32)
        self.sessions: dict[str, Session] = {}
        # Sessions ended by a logout, and when: a cookie of one is answered with that.
        self.logged_out: dict[str, float] = {}

    def _sign(self, session_id: str) -> str:
        return hmac.new(self.key, session_id.encode(), hashlib.sha256).hexdigest()

    def create(self, user: str, token: str, admin: bool) -> tuple[Session, str]:
        """A new session and the cookie value that names it."""
        self._forget_idle()
        session = Session(
            id=secrets.token_urlsafe(24),
            user=user,
            token=token,
            admin=admin,
            last_used=self.clock(),
        )
        self.sessions[session.id] = session
        return session, f"{session.id}.{self._sign(session.id)}"

    def get(self, cookie: str | None) -> Session | None:
        """The live session a cookie names, or None for a missing, forged or expired one."""
        if not cookie or "." not in cookie:
            return None
        session_id, _, signature = cookie.rpartition(".")
        if not hmac.compare_digest(signature, self._sign(session_id)):
            return None
        session = self.sessions.get(session_id)
        if session is None:
            return None
        now = self.clock()
        if now - session.last_used > self.idle_s:
            self.sessions.pop(session_id, None)
            return None
        session.last_used = now
        return session

    def drop(self, session_id: str) -> None:
        self.sessions.pop(session_id, None)

    def log_out(self, session_id: str) -> None:
        """End a session by its user's wish; its cookie is then told so (`was_logged_out`)."""
        self.drop(session_id)
        self.logged_out[session_id] = self.clock()

    def was_logged_out(self, cookie: str | None) -> bool:
        """Whether a genuine cookie names a session its user logged out of."""
        if not cookie or "." not in cookie:
            return False
        session_id, _, signature = cookie.rpartition(".")
        return hmac.compare_digest(signature, self._sign(session_id)) and (
            session_id in self.logged_out
        )

    def _forget_idle(self) -> None:
        cutoff = self.clock() - self.idle_s
        for sid in [sid for sid, s in self.sessions.items() if s.last_used < cutoff]:
            del self.sessions[sid]
        for sid in [sid for sid, at in self.logged_out.items() if at < cutoff]:
            del self.logged_out[sid]
