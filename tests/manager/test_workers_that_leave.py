"""Workers that leave: their tasks go to the Workers still there at once, not once the gone
one is found silent (a minute by default).

- A Worker that stops while its long poll waits closes the connection, but the Manager's
  handler of that request goes on waiting (the HTTP server cancels none). The next task must
  go to a Worker that asks, not into the closed connection.
- A Worker that signs off (status "offline", as `flamenco worker` does when it stops) is
  offline at once, and a task it still held goes to the next Worker.

A real Server and Manager; the Workers are spoken for over HTTP, one of them over a raw
socket that it closes.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from farmkit import TestFarm, wait_until

pytestmark = pytest.mark.blender  # the job is the demo scene


def joined(farm: TestFarm, name: str) -> dict[str, str]:
    assert farm.secrets is not None
    response = httpx.post(
        f"{farm.manager_url}/api/v1/workers/register",
        json={"name": name, "secret": farm.secrets.worker_secret, "blender_version": "5.0.1"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['token']}"}


def last_seen(farm: TestFarm, name: str) -> str:
    return str(farm.workers_on_manager()[name]["last_seen"])


def sync(farm: TestFarm, headers: dict[str, str], **body: Any) -> dict[str, Any]:
    answer = httpx.post(
        f"{farm.manager_url}/api/v1/worker/sync", json=body, headers=headers, timeout=30
    )
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def submit_one_frame(farm: TestFarm, scene: Path) -> str:
    done = farm.cli("submit", str(scene), "--frames", "1", "--json")
    assert done.returncode == 0, done.stderr
    return str(json.loads(done.stdout)["id"])


def test_a_task_arriving_after_a_worker_closed_its_long_poll_goes_to_a_worker_still_there(
    farm: TestFarm, demo_scene: Path
) -> None:
    farm.start_server()
    farm.start_manager()
    gone_headers, there_headers = joined(farm, "poll-closed"), joined(farm, "poll-open")
    registered = last_seen(farm, "poll-closed")
    body = json.dumps({"want_task": True, "wait_s": 25, "status": "awake"}).encode()
    address = urlsplit(farm.manager_url)
    assert address.hostname is not None and address.port is not None
    with socket.create_connection((address.hostname, address.port), timeout=30) as conn:
        conn.sendall(
            b"POST /api/v1/worker/sync HTTP/1.1\r\nHost: manager\r\n"
            + f"Authorization: {gone_headers['Authorization']}\r\n".encode()
            + b"Content-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        # Checked in, so its handler waits for work (nothing runs between the two).
        wait_until(
            lambda: last_seen(farm, "poll-closed") != registered, 30, "the long poll waiting"
        )
    job_id = submit_one_frame(farm, demo_scene)

    assignment = sync(farm, there_headers, want_task=True, wait_s=20)["assignment"]
    assert assignment is not None and assignment["job_id"] == job_id


def test_a_worker_that_signs_off_is_offline_at_once_and_its_task_goes_to_the_next(
    farm: TestFarm, demo_scene: Path
) -> None:
    farm.start_server()
    farm.start_manager()
    leaving, staying = joined(farm, "leaving"), joined(farm, "staying")
    job_id = submit_one_frame(farm, demo_scene)
    taken = sync(farm, leaving, want_task=True, wait_s=20)["assignment"]
    assert taken is not None and taken["job_id"] == job_id

    # It stops before it could report anything about the task.
    assert sync(farm, leaving, want_task=True, status="offline")["assignment"] is None
    assert farm.workers_on_manager()["leaving"]["status"] == "offline"
    again = sync(farm, staying, want_task=True, wait_s=20)["assignment"]
    assert again is not None and again["task_id"] == taken["task_id"]
