"""What a Worker sends its Manager is checked where it arrives: names, frames and numbers.

A real Server and Manager for the module; the Workers are spoken for over HTTP, so that each
answer can be checked.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from farmkit import TestFarm

pytestmark = pytest.mark.blender  # the frames' tests need a job of the demo scene


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestFarm]:
    with TestFarm(tmp_path_factory.mktemp("worker-input") / "farm") as farm:
        farm.start_server()
        farm.start_manager()
        yield farm


def register(site: TestFarm, name: str, token: str | None = None) -> httpx.Response:
    assert site.secrets is not None
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.post(
        f"{site.manager_url}/api/v1/workers/register",
        json={"name": name, "secret": site.secrets.worker_secret, "blender_version": "5.0.1"},
        headers=headers,
        timeout=30,
    )


def joined(site: TestFarm, name: str) -> dict[str, str]:
    response = register(site, name)
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['token']}"}


def sync(site: TestFarm, headers: dict[str, str], body: str | dict[str, Any]) -> httpx.Response:
    content = body if isinstance(body, str) else json.dumps(body)
    return httpx.post(
        f"{site.manager_url}/api/v1/worker/sync",
        content=content,
        headers={**headers, "Content-Type": "application/json"},
        timeout=30,
    )


def assert_refused(response: httpx.Response, status: int, detail: str) -> None:
    assert response.status_code == status, response.text
    assert response.json() == {"detail": detail}


# ---- names ----------------------------------------------------------------------------------


def test_a_second_worker_under_an_online_workers_name_is_a_409(site: TestFarm) -> None:
    first = register(site, "twin")
    assert first.status_code == 200, first.text
    taken = (
        "A Worker named 'twin' is already online at this Manager; "
        "start this one with another --name."
    )
    assert_refused(register(site, "twin"), 409, taken)
    # A stranger's token does not help: it must be that Worker's own.
    other = register(site, "other-twin")
    assert_refused(register(site, "twin", token=other.json()["token"]), 409, taken)
    # The same Worker registering again with its own token keeps its identity and token.
    again = register(site, "twin", token=first.json()["token"])
    assert again.status_code == 200, again.text
    assert again.json() == first.json()
    status = httpx.get(
        f"{site.manager_url}/api/v1/status",
        headers={"Authorization": f"Bearer {site.managers['local'].token}"},
        timeout=30,
    ).json()
    assert sorted(w["name"] for w in status["workers"]).count("twin") == 1


@pytest.mark.parametrize(
    ("name", "detail"),
    [
        ("é" * 101, "The name '" + "é" * 60 + "…' is longer than 200 bytes (202 in UTF-8)"),
        ("tab\tname", "The name 'tab\\tname' contains a control character"),
    ],
    ids=["201-bytes", "control-character"],
)
def test_a_worker_name_that_is_too_long_or_not_printable_is_a_422(
    site: TestFarm, name: str, detail: str
) -> None:
    assert_refused(register(site, name), 422, f"The request is invalid: field 'name': {detail}.")


# ---- numbers --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ('{"stats": {"cpu_percent": NaN}}', "stats.cpu_percent"),
        ('{"stats": {"cpu_percent": Infinity}}', "stats.cpu_percent"),
        ('{"wait_s": -Infinity}', "wait_s"),
    ],
    ids=["nan-load", "infinite-load", "infinite-wait"],
)
def test_a_worker_sync_with_a_number_that_is_not_finite_is_a_422(
    site: TestFarm, body: str, field: str
) -> None:
    headers = joined(site, f"loaded-{field}-{len(body)}")
    assert_refused(
        sync(site, headers, body),
        422,
        f"The request is invalid: field '{field}': Input should be a finite number.",
    )
    assert sync(site, headers, {"stats": {"cpu_percent": 12.5}}).status_code == 200


# ---- frames ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def assigned(site: TestFarm, demo_scene: Path) -> tuple[dict[str, str], dict[str, Any]]:
    """A Worker of its own and the task it was given: (its headers, the assignment)."""
    done = site.cli("submit", str(demo_scene), "--json", "--frames", "1-2", "--chunk", "1")
    assert done.returncode == 0, done.stderr
    headers = joined(site, "framer")
    reply = sync(site, headers, {"want_task": True, "wait_s": 20})
    assert reply.status_code == 200, reply.text
    assignment = reply.json()["assignment"]
    assert assignment is not None
    return headers, assignment


def put_frame(
    site: TestFarm, headers: dict[str, str], task_id: str, frame: int, filename: str
) -> httpx.Response:
    data = f"frame {frame} called {filename!r}".encode()
    return httpx.put(
        f"{site.manager_url}/api/v1/worker/tasks/{task_id}/frames/{frame}",
        params={"filename": filename},
        content=data,
        headers={**headers, "X-Flamenco-SHA256": hashlib.sha256(data).hexdigest()},
        timeout=30,
    )


@pytest.mark.parametrize(
    ("filename", "frame", "detail"),
    [
        (
            "evil\nname.png",
            None,
            "The frame file name 'evil\\nname.png' contains a control character.",
        ),
        (".hidden.png", None, "The frame file name '.hidden.png' is not a plain file name."),
        (
            "x.html",
            None,
            "The frame file name 'x.html' does not end in an image or movie extension such as "
            ".png, .jpg, .exr or .mp4.",
        ),
        ("frame_000999.png", 999, "Frame 999 is not one of the frames of task '{task}'."),
    ],
    ids=["newline", "hidden", "html", "frame-999"],
)
def test_a_frame_with_a_bad_name_or_another_tasks_number_is_a_400(
    site: TestFarm,
    assigned: tuple[dict[str, str], dict[str, Any]],
    filename: str,
    frame: int | None,
    detail: str,
) -> None:
    headers, assignment = assigned
    task_id = assignment["task_id"]
    response = put_frame(site, headers, task_id, frame or assignment["frames"][0], filename)
    assert_refused(response, 400, detail.format(task=task_id))
    status = httpx.get(
        f"{site.manager_url}/api/v1/status",
        headers={"Authorization": f"Bearer {site.managers['local'].token}"},
        timeout=30,
    ).json()
    assert status["outbox"] == 0, "a refused frame was queued for the Server"


def test_a_frame_with_a_plain_name_and_its_tasks_number_is_taken(
    site: TestFarm, assigned: tuple[dict[str, str], dict[str, Any]]
) -> None:
    """The control for the refusals above."""
    headers, assignment = assigned
    frame = assignment["frames"][0]
    response = put_frame(site, headers, assignment["task_id"], frame, f"frame_{frame:06d}.png")
    assert response.status_code == 201, response.text
