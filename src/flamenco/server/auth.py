"""Users, API tokens and Manager tokens: who a request is from, and the doors that issue,
end and replace those credentials. Only hashes of secrets are stored.

A user's token expires `token_ttl` after it was issued (None: never) and can be revoked; a
Manager's token can be revoked or replaced by a new one (rotation). Each credential that no
longer works is answered with a sentence saying what happened to it (revoked, expired,
replaced), so the rows of revoked and expired tokens are kept for `RETIRED_KEPT`.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.orm import Session, load_only, sessionmaker

from flamenco import wire
from flamenco.core.ratelimit import KeyedRateLimit, retry_after_header
from flamenco.db import utcnow
from flamenco.errors import Conflict, Forbidden, NotFound, TooManyRequests, Unauthorized
from flamenco.security import hash_password, new_token, token_hash, verify_password
from flamenco.server.lease_queries import HELD_BY
from flamenco.server.metrics_tokens import METRICS_LABEL, METRICS_ONLY
from flamenco.server.models import ApiToken, ManagerRow, User
from flamenco.server.transitions import release_leases

log = logging.getLogger("flamenco.server.auth")

TOUCH = timedelta(seconds=1)  # how stale a Manager's last_seen may get before it is written
TOKEN_TOUCH = timedelta(minutes=1)  # how stale a token's last_used may get before it is written
RETIRED_KEPT = timedelta(days=90)  # revoked and expired tokens are told apart this long
SEEN_COLUMNS = (
    ManagerRow.id,
    ManagerRow.name,
    ManagerRow.address,
    ManagerRow.last_seen,
    ManagerRow.revoked,
)
NO_TOKEN = "The request has no token; set FLAMENCO_TOKEN or log in."
WRONG_TOKEN = "This token is not known to this Server; check FLAMENCO_TOKEN or log in again."


WRONG_LOGIN = "The user name or password is wrong."


@functools.cache
def unknown_user_hash() -> str:
    """A hash no password matches: a login for a user who does not exist is checked against
    it, so that it takes as long as one for a user who does, and names cannot be found."""
    return hash_password(new_token("nobody"))


def when(moment: datetime) -> str:
    """A moment as the sentences of this module say it: 2026-12-03 13:53 UTC."""
    return moment.strftime("%Y-%m-%d %H:%M UTC")


class AuthService:
    def __init__(
        self,
        sessions: sessionmaker,
        login_burst: int = 5,
        login_refill_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        check_password: Callable[[str, str], bool] = verify_password,
        token_ttl: timedelta | None = timedelta(days=30),
        now: Callable[[], datetime] = utcnow,
        manager_changed: Callable[[list[tuple[str, str]]], None] = lambda released: None,
    ) -> None:
        self.sessions = sessions
        # LeaseService.manager_changed: the Managers page, and the tasks a revocation released
        self.manager_changed = manager_changed
        self.token_ttl = token_ttl  # of the tokens a login issues; None: they never expire
        self.now = now  # tests move it to expire tokens without waiting
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

    def create_first_administrator(self, name: str, password: str) -> None:
        """The Server's first administrator (`flamenco server init`); once there is one, the
        others are added through the API by an administrator, so this one is refused."""
        with self.sessions() as s:
            existing = s.scalar(select(User.name).where(User.is_admin).limit(1))
        if existing is not None:
            raise Conflict(
                f"This Server has an administrator already ('{existing}'); "
                "as an administrator, add users with `flamenco users add`."
            )
        self.create_user(name, password, admin=True)

    def has_administrator(self) -> bool:
        with self.sessions() as s:
            return s.scalar(select(User.id).where(User.is_admin).limit(1)) is not None

    def user_exists(self, name: str) -> bool:
        with self.sessions() as s:
            return s.scalar(select(User.id).where(User.name == name)) is not None

    def issue_token(self, user_name: str, label: str = "", expires: bool = True) -> str:
        """A new token for the user; it expires after `token_ttl` unless `expires` is False
        (the token `flamenco up` keeps in its farm.toml for its own administrator)."""
        token, now = new_token("flu"), self.now()
        ends = now + self.token_ttl if expires and self.token_ttl is not None else None
        with self.sessions.begin() as s:
            user = s.scalar(select(User).where(User.name == user_name))
            if user is None:
                raise NotFound(f"There is no user named '{user_name}'.")
            s.execute(  # what no longer needs telling apart from a token never issued
                delete(ApiToken).where(
                    or_(
                        ApiToken.revoked < now - RETIRED_KEPT, ApiToken.expires < now - RETIRED_KEPT
                    )
                )
            )
            s.add(
                ApiToken(
                    user_id=user.id,
                    token_hash=token_hash(token),
                    label=label,
                    created=now,
                    expires=ends,
                )
            )
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
        """The user of a live token; a 401 that says why for any other."""
        if not token:
            raise Unauthorized(NO_TOKEN)
        now = self.now()
        with self.sessions() as s:
            row = s.scalar(select(ApiToken).where(ApiToken.token_hash == token_hash(token)))
            if row is None:
                raise Unauthorized(WRONG_TOKEN)
            if row.revoked is not None:
                raise Unauthorized(f"This token was revoked on {when(row.revoked)}; log in again.")
            if row.expires is not None and row.expires <= now:
                raise Unauthorized(f"This token expired on {when(row.expires)}; log in again.")
            user = s.get(User, row.user_id) if row.user_id is not None else None
            if user is None:  # not reached: removing a user revokes their tokens
                raise Unauthorized(WRONG_TOKEN)
            if row.label == METRICS_LABEL:  # read-only: /metrics and nothing else
                raise Unauthorized(METRICS_ONLY)
            if row.last_used is None or now - row.last_used >= TOKEN_TOUCH:
                row.last_used = now
                s.commit()
        return user

    # ---- tokens ------------------------------------------------------------------------------

    def tokens(self, user: User, token: str, everyone: bool = False) -> list[wire.TokenInfo]:
        """The live tokens of `user` (of every user with `everyone`, for an administrator),
        oldest first; `token` is the caller's own, marked as current."""
        if everyone and not user.is_admin:
            raise Forbidden("Only an administrator can list the tokens of every user.")
        now, own_hash = self.now(), token_hash(token)
        query = (
            select(ApiToken, User.name)
            .join(User, ApiToken.user_id == User.id)
            .where(ApiToken.revoked.is_(None))
            .where(or_(ApiToken.expires.is_(None), ApiToken.expires > now))
            .order_by(ApiToken.id)
        )
        if not everyone:
            query = query.where(ApiToken.user_id == user.id)
        with self.sessions() as s:
            return [
                wire.TokenInfo(
                    id=row.id,
                    user=name,
                    label=row.label,
                    created=row.created,
                    expires=row.expires,
                    last_used=row.last_used,
                    current=row.token_hash == own_hash,
                )
                for row, name in s.execute(query).all()
            ]

    def revoke_token(self, user: User, token_id: int) -> None:
        """Revoke one of the user's tokens, or anyone's for an administrator."""
        with self.sessions.begin() as s:
            row = s.get(ApiToken, token_id)
            if row is None or row.user_id is None or (row.user_id != user.id and not user.is_admin):
                raise NotFound(f"There is no token {token_id} of yours on this Server.")
            if row.revoked is not None:
                raise Conflict(f"Token {token_id} was already revoked on {when(row.revoked)}.")
            row.revoked = self.now()
        log.info("token %s of user id %s revoked by %s", token_id, row.user_id, user.name)

    def logout(self, token: str) -> None:
        """Revoke the token the request came with (a Dashboard's logout, `flamenco logout`)."""
        with self.sessions.begin() as s:
            s.execute(
                update(ApiToken)
                .where(ApiToken.token_hash == token_hash(token), ApiToken.revoked.is_(None))
                .values(revoked=self.now())
            )

    # ---- users -------------------------------------------------------------------------------

    def change_password(self, by: User, name: str, password: str, token: str) -> None:
        """A user changes their own password, an administrator anyone's. The user's other
        tokens are revoked (whoever knew the old password may hold one); the token that made
        the change keeps working."""
        if by.name != name and not by.is_admin:
            raise Forbidden("Only an administrator can change another user's password.")
        new_hash = hash_password(password)
        with self.sessions.begin() as s:
            user = self._user(s, name)
            user.password_hash = new_hash
            s.execute(
                update(ApiToken)
                .where(ApiToken.user_id == user.id, ApiToken.revoked.is_(None))
                .where(ApiToken.token_hash != token_hash(token))
                .values(revoked=self.now())
            )
        log.info("password of user %s changed by %s", name, by.name)

    def remove_user(self, by: User, name: str) -> None:
        """Remove a user (administrators only) and revoke their tokens; never the last
        administrator, who alone could add users again."""
        if not by.is_admin:
            raise Forbidden("Only an administrator can remove users.")
        with self.sessions.begin() as s:
            user = self._user(s, name)
            if user.is_admin:
                admins = s.scalar(select(func.count()).select_from(User).where(User.is_admin))
                if admins == 1:
                    raise Conflict(
                        f"'{name}' is the last administrator and cannot be removed; "
                        "add another administrator first."
                    )
            mine = ApiToken.user_id == user.id
            s.execute(
                update(ApiToken).where(mine, ApiToken.revoked.is_(None)).values(revoked=self.now())
            )
            s.execute(update(ApiToken).where(mine).values(user_id=None))
            s.delete(user)
        log.info("user %s removed by %s; their tokens are revoked", name, by.name)

    @staticmethod
    def _user(s: Session, name: str) -> User:
        user = s.scalar(select(User).where(User.name == name))
        if user is None:
            raise NotFound(f"There is no user named '{name}'.")
        return user

    def create_manager(self, name: str) -> str:
        token = new_token("flm")
        with self.sessions.begin() as s:
            if s.scalar(select(ManagerRow).where(ManagerRow.name == name)):
                raise Conflict(f"A Manager named '{name}' already exists.")
            s.add(ManagerRow(name=name, token_hash=token_hash(token), token_issued=utcnow()))
        self.manager_changed([])
        return token

    def rotate_manager(self, name: str) -> str:
        """A new token for the Manager; the old one stops working at once (and is answered
        as replaced). A revoked Manager is taken back with it."""
        token = new_token("flm")
        with self.sessions.begin() as s:
            row = self._manager(s, name)
            if row.revoked is None:  # a revoked token stays revoked, not "replaced"
                row.replaced_token_hash = row.token_hash
            row.token_hash, row.token_issued, row.revoked = token_hash(token), utcnow(), None
        log.info("token of manager %s replaced", name)
        self.manager_changed([])
        return token

    def revoke_manager(self, name: str) -> None:
        """The Manager's token stops working at once, and the tasks leased to it go back to
        the queue at once (not when their leases time out): other sites lease them now.
        `rotate_manager` issues a new token."""
        with self.sessions.begin() as s:
            row = self._manager(s, name)
            if row.revoked is not None:
                raise Conflict(f"The token of Manager '{name}' was already revoked.")
            row.revoked = utcnow()
            released = release_leases(
                s.scalars(HELD_BY, {"manager_id": row.id}), "ended: its token was revoked"
            )
        log.info("token of manager %s revoked; %d of its tasks queued again", name, len(released))
        self.manager_changed(released)

    @staticmethod
    def _manager(s: Session, name: str) -> ManagerRow:
        row = s.scalar(select(ManagerRow).where(ManagerRow.name == name))
        if row is None:
            raise NotFound(f"There is no Manager named '{name}'.")
        return row

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
                raise Unauthorized(self._unknown_manager_token(s, token))
            if row.revoked is not None:
                raise Unauthorized(
                    f"The token of Manager '{row.name}' was revoked on {when(row.revoked)}; "
                    f"`flamenco managers rotate {row.name}` issues a new one."
                )
            now = utcnow()
            if row.last_seen is None or now - row.last_seen >= TOUCH or row.address != address:
                row.last_seen, row.address = now, address
                s.commit()
        return row

    @staticmethod
    def _unknown_manager_token(s: Session, token: str) -> str:
        replaced = s.scalar(
            select(ManagerRow).where(ManagerRow.replaced_token_hash == token_hash(token))
        )
        if replaced is None:
            return "This Manager token is not known to this Server; check FLAMENCO_MANAGER_TOKEN."
        return (
            f"This token of Manager '{replaced.name}' was replaced on "
            f"{when(replaced.token_issued)}; restart the Manager with the token that "
            "`flamenco managers rotate` printed."
        )
