"""Logins: failed ones are limited per client address and per user name, and a user name that
does not exist costs the same password check as one that does.

The service is called directly (SQLite and PostgreSQL, its clock and password check passed
in); the limit is also seen through a real Server process, from two real client addresses.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from serverkit import make_services

from farmkit import TestFarm
from flamenco.errors import TooManyRequests, Unauthorized
from flamenco.security import verify_password
from flamenco.server.auth import WRONG_LOGIN, AuthService, unknown_user_hash
from flamenco.server.services import ServerServices


@pytest.fixture(params=["sqlite", "postgres"])
def svc(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ServerServices]:
    yield from make_services(request, tmp_path)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class CountedChecks:
    """The real password check, remembering which hashes it was asked about."""

    def __init__(self) -> None:
        self.hashes: list[str] = []

    def __call__(self, password: str, stored: str) -> bool:
        self.hashes.append(stored)
        return verify_password(password, stored)


def test_an_unknown_user_costs_the_same_password_check(svc: ServerServices) -> None:
    checks = CountedChecks()
    auth = AuthService(svc.auth.sessions, login_burst=100, check_password=checks)
    with pytest.raises(Unauthorized) as unknown:
        auth.login("nobody", "whatever", "10.0.0.1")
    assert checks.hashes == [unknown_user_hash()]
    with pytest.raises(Unauthorized) as known:
        auth.login("alice", "not-her-password", "10.0.0.1")
    assert len(checks.hashes) == 2 and checks.hashes[1].startswith("scrypt$")
    assert unknown.value.message == known.value.message == WRONG_LOGIN

    # Timed in turns, so that whatever else the machine is doing slows both alike.
    times: dict[str, list[float]] = {"nobody": [], "alice": []}
    for _ in range(7):
        for name, spent in times.items():
            start = time.perf_counter()
            with pytest.raises(Unauthorized):
                auth.login(name, "wrong-password", "10.0.0.2")
            spent.append(time.perf_counter() - start)
    unknown_s, known_s = (statistics.median(times[name]) for name in ("nobody", "alice"))
    assert 1 / 3 < unknown_s / known_s < 3, (unknown_s, known_s)


def test_failed_logins_are_limited_per_address_and_per_user(svc: ServerServices) -> None:
    svc.auth.create_user("bob", "bob-secret")
    clock, checks = Clock(), CountedChecks()
    auth = AuthService(
        svc.auth.sessions, login_burst=5, login_refill_s=5.0, clock=clock, check_password=checks
    )
    for _ in range(5):
        with pytest.raises(Unauthorized):
            auth.login("alice", "guess", "10.0.0.1")
    with pytest.raises(TooManyRequests) as limited:
        auth.login("alice", "secret", "10.0.0.1")  # right, but too late: not even checked
    assert limited.value.retry_after_s == pytest.approx(5.0)
    assert limited.value.message.endswith("try again in 5 seconds.")
    assert len(checks.hashes) == 5

    with pytest.raises(TooManyRequests):  # her name, from another address
        auth.login("alice", "secret", "10.0.0.2")
    with pytest.raises(TooManyRequests):  # another user, from the same address
        auth.login("bob", "bob-secret", "10.0.0.1")
    assert auth.login("bob", "bob-secret", "10.0.0.2").startswith("flu_")
    for _ in range(10):  # logins that succeed use nothing up
        auth.login("bob", "bob-secret", "10.0.0.2")

    clock.now += 5.0  # one more try for her, and for that address
    assert auth.login("alice", "secret", "10.0.0.2").startswith("flu_")
    with pytest.raises(Unauthorized):
        auth.login("carol", "guess", "10.0.0.1")
    with pytest.raises(TooManyRequests):
        auth.login("carol", "guess", "10.0.0.1")


# ---- through a real Server ---------------------------------------------------------------------


def login_from(farm: TestFarm, address: str, username: str, password: str) -> httpx.Response:
    """POST /api/v1/login over a connection from `address` (any 127.x address is this host)."""
    transport = httpx.HTTPTransport(local_address=address)
    with httpx.Client(base_url=farm.server_url, transport=transport, timeout=30) as client:
        body = {"username": username, "password": password}
        return client.post("/api/v1/login", json=body)


def test_ten_wrong_passwords_get_a_429_and_other_users_elsewhere_still_log_in(
    farm: TestFarm,
) -> None:
    farm.start_server()
    assert farm.secrets is not None
    body = {"name": "bob", "password": "bob-secret"}
    assert farm.api().http.post("/api/v1/users", json=body).status_code == 201

    answers = [login_from(farm, "127.0.0.1", "admin", f"guess-{n}") for n in range(10)]
    assert [a.status_code for a in answers] == [401] * 5 + [429] * 5, answers[-1].text
    refused = answers[-1]
    assert refused.json() == {
        "detail": "Too many failed logins from this address or for this user; "
        f"try again in {refused.headers['retry-after']} seconds."
    }
    assert 1 <= int(refused.headers["retry-after"]) <= 5

    right = login_from(farm, "127.0.0.1", "admin", farm.secrets.admin_password)
    assert right.status_code == 429  # that address has to wait, even with the right password
    assert login_from(farm, "127.0.0.2", "admin", farm.secrets.admin_password).status_code == 429
    other = login_from(farm, "127.0.0.2", "bob", "bob-secret")
    assert other.status_code == 200, other.text
    assert farm.api(other.json()["token"]).http.get("/api/v1/jobs").status_code == 200
