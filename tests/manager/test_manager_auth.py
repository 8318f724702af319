"""Every link into the Manager is authenticated: join secret, then a per-Worker token."""

from __future__ import annotations

import httpx
import pytest

from farmkit import TestFarm
from flamenco.security import token_hash

REGISTRATION = {"name": "w", "platform": "test", "blender_version": "5.0.1"}
UNKNOWN_WORKER_TOKEN = (
    "This Worker token is not known to this Manager; register again with the join secret."
)


@pytest.fixture
def manager(farm: TestFarm) -> TestFarm:
    farm.start_server()
    farm.start_manager()
    return farm


def test_a_wrong_join_secret_is_refused_and_the_right_one_gives_a_token(manager: TestFarm) -> None:
    url = f"{manager.manager_url}/api/v1/workers/register"
    refused = httpx.post(url, json={**REGISTRATION, "secret": "guess"})
    assert refused.status_code == 401
    assert refused.json() == {
        "detail": "The join secret is wrong or was replaced; use this Manager's current one."
    }
    assert manager.secrets is not None
    joined = httpx.post(url, json={**REGISTRATION, "secret": manager.secrets.worker_secret})
    assert joined.status_code == 200
    token = joined.json()["token"]
    sync = httpx.post(
        f"{manager.manager_url}/api/v1/worker/sync",
        json={},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert sync.status_code == 200 and sync.json()["assignment"] is None


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/api/v1/worker/sync"),
        ("POST", "/api/v1/worker/updates"),
        ("GET", "/api/v1/blobs/" + "a" * 64),
        ("PUT", "/api/v1/worker/tasks/t/frames/1?filename=f.png"),
        ("GET", "/api/v1/status"),
    ],
)
def test_worker_endpoints_need_a_token(manager: TestFarm, method: str, path: str) -> None:
    for headers in ({}, {"Authorization": "Bearer flw_wrong"}):
        response = httpx.request(method, manager.manager_url + path, headers=headers, json={})
        assert response.status_code == 401, response.text
        assert response.json()["detail"].endswith(".")
        if headers and path != "/api/v1/status":  # the status takes the Manager's token
            assert response.json()["detail"] == UNKNOWN_WORKER_TOKEN


def test_the_manager_stores_only_hashes_of_worker_tokens(manager: TestFarm) -> None:
    assert manager.secrets is not None
    joined = httpx.post(
        f"{manager.manager_url}/api/v1/workers/register",
        json={**REGISTRATION, "secret": manager.secrets.worker_secret},
    ).json()
    database = (manager.root / "manager-local" / "manager.sqlite").read_bytes()
    database += (manager.root / "manager-local" / "manager.sqlite-wal").read_bytes()
    assert joined["token"].encode() not in database
    assert token_hash(joined["token"]).encode() in database
