"""Fixtures of the Server's tests: one real Server process for each test module that asks for
it, an HTTP client of it with the administrator's token, and a database URL of each kind."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from farmkit import TestFarm
from pgkit import postgres_database


@pytest.fixture(scope="module")
def srv(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TestFarm]:
    """A farm with only its Server running, shared by the module's tests; a module that needs
    other settings defines its own `srv`."""
    module = request.module.__name__.rpartition(".")[2].removeprefix("test_")
    with TestFarm(tmp_path_factory.mktemp(module) / "farm") as farm:
        farm.start_server()
        yield farm


@pytest.fixture(scope="module")
def http(srv: TestFarm) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {srv.token}"}
    with httpx.Client(base_url=srv.server_url, headers=headers, timeout=60) as client:
        yield client


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A SQLite file, then a PostgreSQL database of the test's own: each test runs on both."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'server.sqlite'}"
    else:
        with postgres_database() as url:
            yield url
