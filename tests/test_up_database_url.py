"""`flamenco up` on the database named by its flag, FLAMENCO_SERVER_DATABASE_URL or
`[server] database_url` of the config file: its administrator, tokens and Manager are made in
that database, which its Server child uses too, so the token it prints works (it used to be
made in SQLite and refused with a 401). The whole farm rendering on PostgreSQL:
tests/e2e/test_postgres_farm.py."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import sqlalchemy

from flamenco import wire
from pgkit import postgres_database
from upkit import UpFarm


def users(url: str) -> list[tuple[str, bool]]:
    engine = sqlalchemy.create_engine(url)
    try:
        with engine.connect() as conn:
            found = conn.execute(sqlalchemy.text("SELECT name, is_admin FROM users"))
            return [(name, bool(admin)) for name, admin in found]
    finally:
        engine.dispose()


@pytest.mark.parametrize("given_by", ["variable", "config file"])
def test_up_makes_its_credentials_in_the_database_its_server_uses(
    tmp_path: Path, given_by: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with postgres_database() as url:
        if given_by == "variable":
            monkeypatch.setenv("FLAMENCO_SERVER_DATABASE_URL", url)
        else:
            config = tmp_path / "config.toml"
            config.write_text(f'[server]\ndatabase_url = "{url}"\n')
            monkeypatch.setenv("FLAMENCO_CONFIG", str(config))
        with UpFarm(tmp_path, "--workers", "0") as up:
            up.wait_running()
            farm = up.test_farm()
            assert farm.api().call("GET", "/api/v1/jobs", wire.JobList).root == []
            managers = farm.api().call("GET", "/api/v1/managers", wire.ManagerList).root
            assert [m.name for m in managers] == ["local"]
            assert users(url) == [("admin", True)]
            assert not list(up.data_dir.rglob("server.sqlite*"))
            assert up.terminate() == 0, up.output()


def test_up_on_a_database_whose_administrator_server_init_made_keeps_its_password(
    tmp_path: Path,
) -> None:
    with postgres_database() as url:
        made = subprocess.run(
            [sys.executable, "-m", "flamenco", "server", "init", "--database-url", url],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert made.returncode == 0, made.stderr
        password = dict(line.split(": ", 1) for line in made.stdout.splitlines())["password"]
        with UpFarm(tmp_path, "--workers", "0", "--database-url", url) as up:
            up.wait_running()
            assert "(log in as 'admin' with its password)" in up.output(), up.output()
            farm = up.test_farm()
            assert farm.secrets is not None and farm.secrets.admin_password == ""
            assert farm.api().call("GET", "/api/v1/jobs", wire.JobList).root == []
            login = httpx.post(
                f"{up.server_url}/api/v1/login", json={"username": "admin", "password": password}
            )
            assert login.status_code == 200, login.text
            assert up.terminate() == 0, up.output()
