"""Bad input to the Worker sync (the route the Manager serves before its framework) gets the
same clear errors as every other route, and changes nothing."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from farmkit import TestFarm


@pytest.fixture
def worker_token(farm: TestFarm) -> str:
    farm.start_server()
    farm.start_manager()
    assert farm.secrets is not None
    joined = httpx.post(
        f"{farm.manager_url}/api/v1/workers/register",
        json={"name": "w", "platform": "test", "secret": farm.secrets.worker_secret},
    )
    return joined.json()["token"]


def sync(farm: TestFarm, token: str, **kwargs: object) -> httpx.Response:
    return httpx.post(
        f"{farm.manager_url}/api/v1/worker/sync",
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
        **kwargs,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize(
    ("body", "status", "detail"),
    [
        (b"{not json", 422, "The request body is not valid JSON."),
        (
            b'{"want_task": "perhaps"}',
            422,
            "The request is invalid: field 'want_task': Input should be a valid boolean",
        ),
        (b'{"wait_s": 3600}', 422, "The request is invalid: field 'wait_s': "),
        (b'{"status": "on holiday"}', 422, "The request is invalid: field 'status': "),
        (b"x" * (17 * 1024 * 1024), 413, "The request body is larger than the limit of "),
    ],
)
def test_bad_sync_bodies_are_refused_with_a_sentence(
    farm: TestFarm, worker_token: str, body: bytes, status: int, detail: str
) -> None:
    response = sync(farm, worker_token, content=body)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.json()["detail"].startswith(detail)
    assert response.json()["detail"].endswith(".")
    # The Worker is still known and can sync normally afterwards.
    again = sync(farm, worker_token, json={"want_task": False})
    assert again.status_code == 200 and again.json()["state"] == "awake"


def test_other_methods_on_the_sync_address_still_get_the_framework_answer(
    farm: TestFarm, worker_token: str
) -> None:
    response = httpx.get(f"{farm.manager_url}/api/v1/worker/sync", timeout=30)
    assert response.status_code in (404, 405)
    assert response.json()["detail"].endswith(".")


@pytest.mark.parametrize("path", ["/api/v1/worker/sync", "/api/v1/worker/updates"])
def test_a_chunked_body_over_the_json_limit_is_a_413(
    farm: TestFarm, worker_token: str, path: str
) -> None:
    """Without a Content-Length the Manager counts what arrives: a 413 as soon as it passes
    the JSON limit, on the route served before FastAPI and on one FastAPI serves alike."""

    def pieces() -> Iterator[bytes]:
        for _ in range(17):
            yield b"x" * (1024 * 1024)

    response = httpx.post(
        f"{farm.manager_url}{path}",
        content=pieces(),
        headers={"Authorization": f"Bearer {worker_token}", "Content-Type": "application/json"},
        timeout=30,
    )
    assert response.status_code == 413, response.text
    assert response.json() == {
        "detail": f"The request body is larger than the limit of {16 * 1024 * 1024} bytes."
    }
    assert sync(farm, worker_token, json={"want_task": False}).status_code == 200
