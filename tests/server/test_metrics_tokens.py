"""Metrics tokens as a service (server/metrics_tokens.py), on SQLite and PostgreSQL: who may
make one, which credentials /metrics lets in, and that the token opens nothing else."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from serverkit import make_services

from flamenco.errors import Forbidden, Unauthorized
from flamenco.metrics import NO_METRICS_TOKEN, NOT_A_METRICS_TOKEN
from flamenco.security import token_hash
from flamenco.server.metrics_tokens import METRICS_ONLY, MetricsTokens
from flamenco.server.models import User
from flamenco.server.services import ServerServices


class Ticks:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["sqlite", "postgres"])
def svc(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ServerServices]:
    yield from make_services(request, tmp_path)  # with user alice (not an administrator)


def _user(svc: ServerServices, name: str) -> User:
    return svc.auth.user_for_token(svc.auth.issue_token(name))


def _refused(check: object, token: str | None, kind: type[Exception]) -> str:
    with pytest.raises(kind) as refused:
        check(token)  # type: ignore[operator]
    return str(refused.value)


def test_only_an_administrator_makes_one_and_it_reads_metrics_only(svc: ServerServices) -> None:
    svc.auth.create_user("root", "password1", admin=True)
    tokens = MetricsTokens(svc.jobs.sessions, clock=Ticks())
    with pytest.raises(Forbidden):
        tokens.issue(_user(svc, "alice"))
    token = tokens.issue(_user(svc, "root"))
    assert token.startswith("flr_")

    tokens.check(token)  # let in
    assert asyncio.run(tokens.for_sync()) == [token_hash(token)]  # what the Managers get
    assert _refused(tokens.check, None, Unauthorized) == NO_METRICS_TOKEN
    assert _refused(tokens.check, "flr_never-issued", Unauthorized) == NOT_A_METRICS_TOKEN
    user_token = svc.auth.issue_token("alice")
    assert _refused(tokens.check, user_token, Forbidden) == NOT_A_METRICS_TOKEN
    manager_token = svc.auth.create_manager("site-a")
    assert _refused(tokens.check, manager_token, Forbidden) == NOT_A_METRICS_TOKEN
    # Everywhere else the metrics token is the wrong one.
    assert _refused(svc.auth.user_for_token, token, Unauthorized) == METRICS_ONLY


def test_a_revoked_one_is_refused_once_the_hashes_are_read_again(svc: ServerServices) -> None:
    svc.auth.create_user("root", "password1", admin=True)
    ticks = Ticks()
    tokens = MetricsTokens(svc.jobs.sessions, refresh_s=10.0, clock=ticks)
    root = _user(svc, "root")
    token = tokens.issue(root)
    tokens.check(token)
    (listed,) = [t for t in svc.auth.tokens(root, "", everyone=False) if t.label == "metrics"]
    svc.auth.revoke_token(root, listed.id)

    tokens.check(token)  # the cache, for up to refresh_s
    ticks.now += 10.0
    assert _refused(tokens.check, token, Unauthorized) == NOT_A_METRICS_TOKEN
    assert asyncio.run(tokens.for_sync()) == []
