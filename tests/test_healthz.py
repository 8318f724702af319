"""/healthz of the Server, the Manager and the Dashboard, as real processes: 200 with a small
JSON body and no token while each can serve, 503 with the reason when it cannot (the Server's
database gone, the Dashboard's Server gone). The Worker has no HTTP server, so no /healthz."""

from __future__ import annotations

from pathlib import Path

import httpx
import sqlalchemy

from farmkit import TestFarm, wait_until
from pgkit import ADMIN_URL, postgres_database


def _health(url: str) -> httpx.Response:
    return httpx.get(f"{url}/healthz", timeout=10)


def test_every_service_is_healthy_without_a_token(tmp_path: Path) -> None:
    with TestFarm(tmp_path / "farm") as farm:
        farm.start_server()
        manager_url = farm.start_manager()
        dashboard_url, _ = farm.start_dashboard()
        for url, name in (
            (farm.server_url, "Flamenco Server"),
            (manager_url, "Flamenco Manager"),
            (dashboard_url, "Flamenco Dashboard"),
        ):
            answer = _health(url)
            assert answer.status_code == 200, answer.text
            assert answer.json() == {"name": name, "status": "ok"}


def test_the_dashboard_is_unhealthy_while_its_server_is_away(tmp_path: Path) -> None:
    with TestFarm(tmp_path / "farm") as farm:
        farm.start_server()
        server = farm.procs[-1]
        manager_url = farm.start_manager()
        dashboard_url, _ = farm.start_dashboard()
        server.stop()
        answer = _health(dashboard_url)
        assert answer.status_code == 503
        assert answer.json()["detail"].startswith(f"The Server at {farm.server_url} ")
        # The Manager goes on serving its Workers without the Server: still healthy.
        assert _health(manager_url).status_code == 200
        farm.restart(server)
        wait_until(lambda: _health(dashboard_url).status_code == 200, 60, "the Dashboard healthy")


def test_the_server_is_unhealthy_when_its_database_is_gone(tmp_path: Path) -> None:
    with postgres_database() as url, TestFarm(tmp_path / "farm") as farm:
        farm.start_server(env={"FLAMENCO_SERVER_DATABASE_URL": url})
        assert _health(farm.server_url).status_code == 200
        name = sqlalchemy.make_url(url).database
        admin = sqlalchemy.create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as conn:  # ends the Server's connections too
                conn.exec_driver_sql(f'DROP DATABASE "{name}" WITH (FORCE)')
        finally:
            admin.dispose()
        answer = _health(farm.server_url)
        assert answer.status_code == 503
        assert answer.json() == {
            "detail": "The Server's database cannot be reached (OperationalError)."
        }
