"""`flamenco server init`: a Server run as a service (no `flamenco up`) gets its first
administrator, on SQLite and on PostgreSQL; a fresh Server's log says how, and a second init
is refused with one sentence and changes nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import sqlalchemy

from farmkit import Proc, TestFarm, free_port, wait_until
from flamenco.db import sqlite_url
from pgkit import postgres_database
from upkit import free_offset

HINT = "This Server has no administrator yet: create the first one with `flamenco server init"


@dataclass
class Database:
    url: str  # what the test reads the tables with
    server_env: dict[str, str]  # how the Server, as a service, is told its database
    init_flags: list[str]  # how `server init` is


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    data_dir = tmp_path / "server"
    if request.param == "sqlite":
        yield Database(sqlite_url(data_dir / "server.sqlite"), {}, ["--data-dir", str(data_dir)])
        return
    with postgres_database() as url:
        env = {"FLAMENCO_SERVER_DATABASE_URL": url}
        yield Database(url, env, ["--data-dir", str(data_dir), "--database-url", url])


def start_server(farm: TestFarm, database: Database, label: str) -> tuple[str, Proc]:
    port = free_port()
    args = ["server", "--port", str(port), "--data-dir", str(farm.root.parent / "server")]
    proc = Proc(label, args, database.server_env, farm.root / "logs" / f"{label}.log")
    farm.procs.append(proc)
    url = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        assert proc.alive(), proc.output()
        try:
            return httpx.get(f"{url}/api/v1/version", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(answers, 60, f"{label} answering")
    return url, proc


def init(database: Database, *flags: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLAMENCO_")}
    return subprocess.run(
        [sys.executable, "-m", "flamenco", "server", "init", *database.init_flags, *flags],
        capture_output=True,
        text=True,
        env={**env, "COLUMNS": "300"},
        timeout=120,
        check=False,
    )


def users(url: str) -> list[tuple[str, bool]]:
    engine = sqlalchemy.create_engine(url)
    try:
        with engine.connect() as conn:
            found = conn.execute(sqlalchemy.text("SELECT name, is_admin FROM users"))
            return [(name, bool(admin)) for name, admin in found]
    finally:
        engine.dispose()


def test_server_init_makes_the_first_administrator_of_a_fresh_server_once(
    tmp_path: Path, database: Database
) -> None:
    with TestFarm(tmp_path / "farm") as farm:
        server_url, server = start_server(farm, database, "server")
        wait_until(lambda: HINT in server.output(), 30, "the Server's hint about server init")

        made = init(database, "--admin", "boss")
        assert made.returncode == 0, made.stderr
        printed = dict(line.split(": ", 1) for line in made.stdout.splitlines())
        assert set(printed) == {"password", "token"}, made.stdout
        assert "Administrator 'boss' created" in made.stderr
        assert "FLAMENCO_TOKEN=<token> flamenco jobs list" in made.stderr
        # The running Server takes both: its database is the one init wrote.
        jobs = httpx.get(
            f"{server_url}/api/v1/jobs", headers={"Authorization": f"Bearer {printed['token']}"}
        )
        assert jobs.status_code == 200, jobs.text
        login = httpx.post(
            f"{server_url}/api/v1/login",
            json={"username": "boss", "password": printed["password"]},
        )
        assert login.status_code == 200, login.text

        again = init(database, "--admin", "other")
        assert again.returncode == 1
        assert again.stdout == ""
        assert again.stderr.strip() == (
            "Error: This Server has an administrator already ('boss'); as an administrator, "
            "add users with `flamenco users add`."
        )
        assert users(database.url) == [("boss", True)]

        # A Server started now has an administrator and says nothing about init.
        server.stop()
        _, restarted = start_server(farm, database, "server-again")
        assert HINT not in restarted.output()


UNUSABLE = [
    (
        "foo",
        "The database URL cannot be used: Could not parse SQLAlchemy URL from given URL string.",
    ),
    (
        "mysql://someone@localhost/flamenco",
        "The database URL needs a driver that is not "
        "installed (MySQLdb); for PostgreSQL, install Flamenco's `postgres` extra.",
    ),
    (
        "postgresql+psycopg://postgres@127.0.0.1:5432/flamenco_no_such_database",
        "The database cannot be reached: connection failed: ",
    ),
]


@pytest.mark.parametrize("command", [["server", "init"], ["server", "migrate"], ["up"]])
@pytest.mark.parametrize(("url", "sentence"), UNUSABLE)
def test_a_database_url_that_cannot_be_used_stops_the_command_with_one_sentence(
    tmp_path: Path, command: list[str], url: str, sentence: str
) -> None:
    extra = ["--port-offset", str(free_offset())] if command == ["up"] else []
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLAMENCO_")}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "flamenco",
            *command,
            "--data-dir",
            str(tmp_path / "data"),
            *extra,
            "--database-url",
            url,
        ],
        capture_output=True,
        text=True,
        env={**env, "HOME": str(tmp_path / "home"), "COLUMNS": "300"},
        timeout=120,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    (line,) = [line for line in done.stderr.splitlines() if line.startswith("Error: ")]
    assert line.startswith(f"Error: {sentence}"), done.stderr
    assert "Traceback" not in done.stderr
    assert not list((tmp_path / "data").rglob("*.sqlite"))
