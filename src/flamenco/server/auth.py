"""Users, API tokens and Manager tokens. Only hashes of secrets are stored."""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import load_only, sessionmaker

from flamenco.core.ratelimit import KeyedRateLimit, retry_after_header
from flamenco.db import utcnow
from flamenco.errors import Conflict, NotFound, TooManyRequests, Unauthorized
from flamenco.security import hash_password, new_token, token_hash, verify_password
from flamenco.server.models import ApiToken, ManagerRow, User

log = logging.getLogger("flamenco.server.auth")

TOUCH = timedelta(seconds=1)  # how stale a Manager's last_seen may get before it is written
SEEN_COLUMNS = (ManagerRow.id, ManagerRow.name, ManagerRow.address, ManagerRow.last_seen)
WRONG_TOKEN = "The token is missing, wrong or revoked; check FLAMENCO_TOKEN or log in again."


WRONG_LOGIN = "The user name or password is wrong."


@functools.cache
def unknown_user_hash() -> str:
    """A hash no password matches: a login for a user who does not exist is checked against
    it, so that it takes as long as one for a user who does, and names cannot be found."""
    return hash_password(new_token("nobody"))


class AuthService:
    def __init__(
        self,
        sessions: sessionmaker,
        login_burst: int = 5,
        login_refill_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        check_password: Callable[[str, str], bool] = verify_password,
    ) -> None:
        self.sessions = sessions
        # Failed logins, per client address and per user name (see core/ratelimit.py).
        self.login_limit = KeyedRateLimit(login_burst, login_refill_s, clock)
        self.login_limit_lock = threading.Lock()  # logins run on the thread pool
        self.check_password = check_password  # tests count the checks
        unknown_user_hash()  # made now, not in the first login for a name that does not exist

    def create_user(self, name: str, password: str, admin: bool = False) -> None:
        with self.sessions.begin() as s:
            if s.scalar(select(User).where(User.name == name)):
                raise Conflict(f"A user named '{name}' already exists.")
            s.add(User(name=name, password_hash=hash_password(password), is_admin=admin))

    def user_exists(self, name: str) -> bool:
        with self.sessions() as s:
            return s.scalar(select(User.id).where(User.name == name)) is not None

    def issue_token(self, user_name: str, label: str = "") -> str:
        token = new_token("flu")
        with self.sessions.begin() as s:
            user = s.scalar(select(User).where(User.name == user_name))
            if user is None:
                raise NotFound(f"There is no user named '{user_name}'.")
            s.add(ApiToken(user_id=user.id, token_hash=token_hash(token), label=label))
        return token

    def login(self, name: str, password: str, address: str = "") -> str:
        """A new token for the user, if the password is theirs.

        Failed logins are limited per client address and per user name: past the limit the
        answer is a 429 whatever the password, without checking it. A name that does not
        exist costs the same password check as one that does.
        """
        keys = (("address", address), ("user", name))
        with self.login_limit_lock:
            wait_s = self.login_limit.take(keys)
        if wait_s > 0:
            log.warning("login as %r from %s refused: too many failed logins", name, address)
            raise TooManyRequests(
                "Too many failed logins from this address or for this user; try again in "
                f"{retry_after_header(wait_s)} seconds.",
                retry_after_s=wait_s,
            )
        with self.sessions() as s:
            user = s.scalar(select(User).where(User.name == name))
        stored = user.password_hash if user is not None else unknown_user_hash()
        if not self.check_password(password, stored) or user is None:
            raise Unauthorized(WRONG_LOGIN)
        with self.login_limit_lock:
            self.login_limit.give_back(keys)
        return self.issue_token(name, label="login")

    def user_for_token(self, token: str | None) -> User:
        if not token:
            raise Unauthorized(WRONG_TOKEN)
        with self.sessions() as s:
            user = s.scalar(
                select(User).join(ApiToken).where(ApiToken.token_hash == token_hash(token))
            )
        if user is None:
            raise Unauthorized(WRONG_TOKEN)
        return user

    def create_manager(self, name: str) -> str:
        token = new_token("flm")
        with self.sessions.begin() as s:
            if s.scalar(select(ManagerRow).where(ManagerRow.name == name)):
                raise Conflict(f"A Manager named '{name}' already exists.")
            s.add(ManagerRow(name=name, token_hash=token_hash(token)))
        return token

    def manager_for_token(self, token: str | None, address: str = "") -> ManagerRow:
        """The Manager of the token (its id, name, address and last_seen only), seen now.

        A Manager calls for every update and frame: its last_seen is written when it is
        older than TOUCH_S, not on every call.
        """
        if not token:
            raise Unauthorized("The Manager token is missing.")
        with self.sessions() as s:
            row = s.scalar(
                select(ManagerRow)
                .options(load_only(*SEEN_COLUMNS))
                .where(ManagerRow.token_hash == token_hash(token))
            )
            if row is None:
                raise Unauthorized("The Manager token is wrong or revoked.")
            now = utcnow()
            if row.last_seen is None or now - row.last_seen >= TOUCH or row.address != address:
                row.last_seen, row.address = now, address
                s.commit()
        return row
