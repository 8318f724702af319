"""Credentials that end: expiry, revocation, password changes, removed users, Manager tokens.

The services are called directly on a real SQLite file and a real PostgreSQL; expiry is shown
with the service's own clock moved forward, not by waiting.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from serverkit import make_services

from flamenco.db import utcnow
from flamenco.errors import Conflict, Forbidden, NotFound, Unauthorized
from flamenco.server.auth import WRONG_TOKEN, when
from flamenco.server.models import User
from flamenco.server.services import ServerServices


@pytest.fixture(params=["sqlite", "postgres"])
def svc(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ServerServices]:
    yield from make_services(request, tmp_path)  # with user alice (not an administrator)


class Clock:
    def __init__(self) -> None:
        self.at = utcnow()

    def __call__(self) -> datetime:
        return self.at


@pytest.fixture
def clock(svc: ServerServices) -> Clock:
    svc.auth.now = clock = Clock()
    return clock


def refusal(svc: ServerServices, token: str) -> str:
    with pytest.raises(Unauthorized) as refused:
        svc.auth.user_for_token(token)
    return refused.value.message


def admin(svc: ServerServices, name: str = "root") -> User:
    svc.auth.create_user(name, "password1", admin=True)
    return svc.auth.user_for_token(svc.auth.issue_token(name))


def test_a_login_token_expires_after_the_ttl_and_says_so(svc: ServerServices, clock: Clock) -> None:
    token = svc.auth.login("alice", "secret")
    issued = clock.at
    clock.at = issued + timedelta(days=30) - timedelta(seconds=1)
    assert svc.auth.user_for_token(token).name == "alice"
    clock.at = issued + timedelta(days=30)
    expires = issued + timedelta(days=30)
    assert refusal(svc, token) == f"This token expired on {when(expires)}; log in again."
    alice = svc.auth.user_for_token(svc.auth.login("alice", "secret"))
    assert [t.expires for t in svc.auth.tokens(alice, "")] == [clock.at + timedelta(days=30)]


def test_a_token_without_ttl_or_issued_not_to_expire_never_does(
    svc: ServerServices, clock: Clock
) -> None:
    kept = svc.auth.issue_token("alice", label="flamenco up", expires=False)
    svc.auth.token_ttl = None  # token_ttl_days = 0
    endless = svc.auth.login("alice", "secret")
    clock.at += timedelta(days=3650)
    assert svc.auth.user_for_token(kept).name == svc.auth.user_for_token(endless).name == "alice"


def test_tokens_are_listed_without_their_secret_and_revoked_one_by_one(
    svc: ServerServices, clock: Clock
) -> None:
    first = svc.auth.login("alice", "secret")
    second = svc.auth.issue_token("alice", label="script")
    alice = svc.auth.user_for_token(first)
    listed = svc.auth.tokens(alice, first)
    assert [(t.label, t.current, t.user) for t in listed] == [
        ("login", True, "alice"),
        ("script", False, "alice"),
    ]
    assert listed[0].last_used == clock.at and listed[1].last_used is None
    assert first not in repr(listed) and second not in repr(listed)

    svc.auth.revoke_token(alice, listed[1].id)
    assert refusal(svc, second) == f"This token was revoked on {when(clock.at)}; log in again."
    assert [t.label for t in svc.auth.tokens(alice, first)] == ["login"]
    with pytest.raises(Conflict, match="already revoked"):
        svc.auth.revoke_token(alice, listed[1].id)
    assert refusal(svc, "flu_never-issued") == WRONG_TOKEN


def test_only_an_admin_sees_and_revokes_other_users_tokens(svc: ServerServices) -> None:
    alices = svc.auth.login("alice", "secret")
    alice = svc.auth.user_for_token(alices)
    root = admin(svc)
    (roots,) = svc.auth.tokens(root, "")
    with pytest.raises(NotFound, match=f"no token {roots.id} of yours"):
        svc.auth.revoke_token(alice, roots.id)
    with pytest.raises(Forbidden):
        svc.auth.tokens(alice, alices, everyone=True)
    everyone = svc.auth.tokens(root, "", everyone=True)
    assert sorted(t.user for t in everyone) == ["alice", "root"]
    svc.auth.revoke_token(root, next(t.id for t in everyone if t.user == "alice"))
    assert "was revoked" in refusal(svc, alices)


def test_logout_revokes_the_token_it_is_made_with(svc: ServerServices) -> None:
    token, other = svc.auth.login("alice", "secret"), svc.auth.login("alice", "secret")
    svc.auth.logout(token)
    assert "was revoked" in refusal(svc, token)
    assert svc.auth.user_for_token(other).name == "alice"


def test_a_new_password_revokes_the_users_other_tokens(svc: ServerServices) -> None:
    using, other = svc.auth.login("alice", "secret"), svc.auth.login("alice", "secret")
    alice = svc.auth.user_for_token(using)
    svc.auth.change_password(alice, "alice", "new password", using)
    assert svc.auth.user_for_token(using).name == "alice"
    assert "was revoked" in refusal(svc, other)
    assert svc.auth.user_for_token(svc.auth.login("alice", "new password")).name == "alice"
    with pytest.raises(Unauthorized):
        svc.auth.login("alice", "secret")
    root = admin(svc)
    with pytest.raises(Forbidden, match="another user's password"):
        svc.auth.change_password(alice, "root", "taken over", using)
    svc.auth.change_password(root, "alice", "set by root", "")
    assert "was revoked" in refusal(svc, using)
    with pytest.raises(NotFound, match="no user named 'nobody'"):
        svc.auth.change_password(root, "nobody", "whatever1", "")


def test_removing_a_user_revokes_their_tokens_but_never_the_last_admin(
    svc: ServerServices,
) -> None:
    alices = svc.auth.login("alice", "secret")
    root = admin(svc)
    with pytest.raises(Forbidden):
        svc.auth.remove_user(svc.auth.user_for_token(alices), "root")
    with pytest.raises(Conflict, match="'root' is the last administrator"):
        svc.auth.remove_user(root, "root")
    svc.auth.remove_user(root, "alice")
    assert "was revoked" in refusal(svc, alices)
    assert not svc.auth.user_exists("alice")
    assert [t.user for t in svc.auth.tokens(root, "", everyone=True)] == ["root"]
    svc.auth.create_user("alice", "secret")  # the name can be used again
    second = admin(svc, "second")
    svc.auth.remove_user(second, "root")  # not the last administrator any more
    assert not svc.auth.user_exists("root")


def test_a_rotated_manager_token_is_answered_as_replaced_and_a_revoked_one_as_revoked(
    svc: ServerServices,
) -> None:
    old = svc.auth.create_manager("paris")
    new = svc.auth.rotate_manager("paris")
    assert svc.auth.manager_for_token(new).name == "paris"
    with pytest.raises(Unauthorized, match="token of Manager 'paris' was replaced on"):
        svc.auth.manager_for_token(old)
    svc.auth.revoke_manager("paris")
    with pytest.raises(Unauthorized, match=r"Manager 'paris' was revoked on .*managers rotate"):
        svc.auth.manager_for_token(new)
    assert [m.status for m in svc.leases.managers()] == ["revoked"]
    with pytest.raises(Conflict):
        svc.auth.revoke_manager("paris")
    newest = svc.auth.rotate_manager("paris")
    assert svc.auth.manager_for_token(newest).name == "paris"
    with pytest.raises(Unauthorized, match="not known to this Server"):
        svc.auth.manager_for_token("flm_never-issued")
    with pytest.raises(NotFound, match="no Manager named 'rome'"):
        svc.auth.rotate_manager("rome")
