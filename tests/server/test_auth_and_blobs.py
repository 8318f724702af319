"""The positive paths next to test_bad_input: logging in, asking what is missing, uploading.

One real Server process serves the whole module.
"""

from __future__ import annotations

import hashlib

import httpx
import pytest

from farmkit import TestFarm

WRONG_LOGIN = "The user name or password is wrong."


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def temp_files(farm: TestFarm) -> list[str]:
    return sorted(p.name for p in (farm.root / "server" / "blobs" / "tmp").iterdir())


def missing(http: httpx.Client, hashes: list[str]) -> list[str]:
    response = http.post("/api/v1/blobs/missing", json={"hashes": hashes})
    assert response.status_code == 200, response.text
    return response.json()["missing"]


# ---- login -----------------------------------------------------------------------------------


def test_login_with_the_right_password_issues_a_working_token(srv: TestFarm) -> None:
    assert srv.secrets is not None
    response = httpx.post(
        f"{srv.server_url}/api/v1/login",
        json={"username": "admin", "password": srv.secrets.admin_password},
    )
    assert response.status_code == 200, response.text
    issued = response.json()
    assert issued["name"] == "admin"
    assert issued["token"] != srv.token  # a fresh token per login
    jobs = httpx.get(
        f"{srv.server_url}/api/v1/jobs", headers={"Authorization": f"Bearer {issued['token']}"}
    )
    assert jobs.status_code == 200, jobs.text


@pytest.mark.parametrize(
    ("username", "password"),
    [("admin", "not-the-password"), ("nobody", "whatever")],
    ids=["wrong-password", "unknown-user"],
)
def test_login_with_a_wrong_password_or_user_is_a_401(
    srv: TestFarm, username: str, password: str
) -> None:
    response = httpx.post(
        f"{srv.server_url}/api/v1/login", json={"username": username, "password": password}
    )
    assert response.status_code == 401, response.text
    # The same sentence either way: the answer does not reveal which user names exist.
    assert response.json() == {"detail": WRONG_LOGIN}


def test_the_version_needs_no_token(srv: TestFarm) -> None:
    response = httpx.get(f"{srv.server_url}/api/v1/version")
    assert response.status_code == 200
    assert response.json()["name"] == "Flamenco Server"


# ---- blobs -----------------------------------------------------------------------------------


def test_uploading_the_same_blob_twice_is_harmless(srv: TestFarm, http: httpx.Client) -> None:
    data = b"the same bytes, sent twice\n" * 1000
    digest = sha256(data)
    assert missing(http, [digest]) == [digest]
    for _ in range(2):
        response = http.put(f"/api/v1/blobs/{digest}", content=data)
        assert response.status_code == 201, response.text
        assert response.json() == {"sha256": digest, "size": len(data)}
    assert missing(http, [digest]) == []
    assert http.get(f"/api/v1/blobs/{digest}").content == data
    assert temp_files(srv) == []


def test_missing_lists_exactly_the_unknown_hashes_sorted_and_once(http: httpx.Client) -> None:
    known = sha256(b"known blob")
    assert http.put(f"/api/v1/blobs/{known}", content=b"known blob").status_code == 201
    unknown = sorted(sha256(bytes([n])) for n in range(3))
    asked = [unknown[2], known, unknown[0], unknown[2], unknown[1], known]
    assert missing(http, asked) == unknown
    assert missing(http, []) == []


def test_missing_refuses_something_that_is_not_a_hash(http: httpx.Client) -> None:
    response = http.post("/api/v1/blobs/missing", json={"hashes": ["scene.blend"]})
    assert response.status_code == 422
    assert "'hashes.0'" in response.json()["detail"]


def test_a_manager_token_may_download_a_blob(srv: TestFarm, http: httpx.Client) -> None:
    assert srv.secrets is not None
    data = b"a scene the Manager caches"
    digest = sha256(data)
    assert http.put(f"/api/v1/blobs/{digest}", content=data).status_code == 201
    response = httpx.get(
        f"{srv.server_url}/api/v1/blobs/{digest}",
        headers={"Authorization": f"Bearer {srv.secrets.manager_token}"},
    )
    assert response.status_code == 200 and response.content == data
