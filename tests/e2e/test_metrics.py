"""/metrics of a real farm after it rendered a job: the Server's and the Manager's, scraped with
a metrics token as Prometheus would, parsed with prometheus-client's text parser; and who is
let in (a metrics token only, and only to /metrics)."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from farmkit import TestFarm, wait_until
from metricskit import has, scrape, value

pytestmark = pytest.mark.blender

FRAMES, CHUNK = 6, 2
TASKS = FRAMES // CHUNK


def _get(url: str, token: str | None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.get(url, headers=headers, timeout=10)


def _manager_scrape_allowed(url: str, token: str) -> bool:
    return _get(f"{url}/metrics", token).status_code == 200


def test_metrics_of_a_farm_that_rendered_a_job(farm: TestFarm, demo_scene: Path) -> None:
    farm.start_server()
    manager_url = farm.start_manager()
    farm.start_worker("w1")

    done = farm.cli(
        "submit", str(demo_scene), "--frames", f"1-{FRAMES}", "--chunk", str(CHUNK),
        "--wait", "--json",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr + farm.logs()
    assert json.loads(done.stdout)["status"] == "completed"

    made = farm.cli("metrics", "token")
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    assert token.startswith("flr_")

    server = scrape(farm.server_url, token)
    assert value(server, "flamenco_server_jobs", status="completed") == 1
    assert value(server, "flamenco_server_jobs") == 1  # every status: only the one job
    assert value(server, "flamenco_server_tasks", status="completed") == TASKS
    assert value(server, "flamenco_server_leases_total") >= TASKS
    assert value(server, "flamenco_server_uploaded_bytes_total", kind="blob") > 0
    assert value(server, "flamenco_server_uploaded_bytes_total", kind="frame") > 0
    assert value(server, "flamenco_server_upload_seconds_count", kind="frame") >= FRAMES
    assert value(server, "flamenco_server_downloaded_bytes_total") > 0  # the Manager's fetch
    assert value(server, "flamenco_server_workers", site="local") == 1
    assert value(server, "flamenco_server_manager_online", site="local") == 1
    assert value(server, "flamenco_server_manager_sync_seconds_count") > 0
    assert value(server, "flamenco_server_disk_free_bytes") > 0

    # The Manager learns the token's hash with its next sync.
    wait_until(lambda: _manager_scrape_allowed(manager_url, token), 30, "the Manager's /metrics")
    manager = scrape(manager_url, token)
    assert value(manager, "flamenco_manager_assignments_total") >= TASKS
    assert value(manager, "flamenco_manager_workers", site="local") == 1
    assert value(manager, "flamenco_manager_worker_sync_seconds_count") > 0
    assert value(manager, "flamenco_manager_server_sync_seconds_count") > 0
    assert value(manager, "flamenco_manager_uploaded_bytes_total", kind="frame") > 0
    assert value(manager, "flamenco_manager_upload_seconds_count", kind="frame") >= FRAMES
    assert value(manager, "flamenco_manager_downloaded_bytes_total") > 0
    assert value(manager, "flamenco_manager_cache_bytes") > 0
    assert value(manager, "flamenco_manager_server_online") == 1
    assert has(manager, "flamenco_manager_last_server_sync_age_seconds")
    wait_until(
        lambda: value(scrape(manager_url, token), "flamenco_manager_outbox_items") == 0,
        30,
        "the Manager's outbox delivered",
    )

    # Who is let in: the metrics token on /metrics only, each refusal with its sentence.
    for url in (farm.server_url, manager_url):
        missing = _get(f"{url}/metrics", None)
        assert missing.status_code == 401
        assert "metrics token" in missing.json()["detail"]
    user = _get(f"{farm.server_url}/metrics", farm.token)
    assert user.status_code == 403
    assert user.json()["detail"].startswith("This token is not a metrics token")
    assert _get(f"{manager_url}/metrics", farm.token).status_code == 401
    assert _get(f"{farm.server_url}/metrics", farm.managers["local"].token).status_code == 403
    jobs = _get(f"{farm.server_url}/api/v1/jobs", token)
    assert jobs.status_code == 401
    assert (
        jobs.json()["detail"] == "A metrics token only reads /metrics; use a user's token for this."
    )

    # Revoked like any token of its administrator: the Server and the Manager refuse it.
    listed = farm.cli("tokens", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    ids = [t["id"] for t in json.loads(listed.stdout) if t["label"] == "metrics"]
    assert len(ids) == 1
    revoked = farm.cli("tokens", "revoke", str(ids[0]))
    assert revoked.returncode == 0, revoked.stderr
    refused = wait_until(
        lambda: (r := _get(f"{farm.server_url}/metrics", token)).status_code == 401 and r,
        30,
        "the Server refusing the revoked metrics token",
    )
    assert refused.json()["detail"].startswith("This token is not a metrics token")
    wait_until(
        lambda: _get(f"{manager_url}/metrics", token).status_code == 401,
        30,
        "the Manager refusing the revoked metrics token",
    )
