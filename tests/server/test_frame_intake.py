"""The Server checks each frame as it arrives (flamenco.frame_check), before it is recorded: a
bad one is a 422 saying which frame and what is wrong, and nothing of it is kept (no output
row, no file in the output folder, no blob). One real Server process for the module."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from farmkit import TestFarm

pytestmark = pytest.mark.blender  # the job's scene is the demo scene, built by real Blender


def png(colour: tuple[int, int, int] | None = None) -> bytes:
    """A whole 16x8 PNG: noise, or one colour."""
    if colour is None:
        picture = Image.frombytes("RGB", (16, 8), bytes(range(256))[: 16 * 8 * 3 // 2] * 2)
    else:
        picture = Image.new("RGB", (16, 8), colour)
    out = io.BytesIO()
    picture.save(out, "PNG")
    return out.getvalue()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def scene_sha(http: httpx.Client, demo_scene: Path) -> str:
    data = demo_scene.read_bytes()
    response = http.put(f"/api/v1/blobs/{sha256(data)}", content=data)
    assert response.status_code == 201, response.text
    return sha256(data)


def leased(srv: TestFarm, http: httpx.Client, scene_sha: str, **settings: Any) -> tuple[str, str]:
    """A job of its own with these settings, its first task leased to the Manager."""
    body = {
        "name": "intake",
        "priority": 100,
        "files": {"scene.blend": scene_sha},
        "settings": {"blend": "scene.blend", "frames": "1", **settings},
    }
    created = http.post("/api/v1/jobs", json=body)
    assert created.status_code == 201, created.text
    assert srv.secrets is not None
    synced = httpx.post(
        f"{srv.server_url}/api/v1/manager/sync",
        json={"want": 1, "workers": [{"name": "w", "status": "awake", "blender_version": "99.0"}]},
        headers={"Authorization": f"Bearer {srv.secrets.manager_token}"},
    )
    assert synced.status_code == 200, synced.text
    (lease,) = synced.json()["leases"]
    assert lease["job_id"] == created.json()["id"]
    return lease["job_id"], lease["task_id"]


def put_frame(srv: TestFarm, task_id: str, filename: str, data: bytes) -> httpx.Response:
    assert srv.secrets is not None
    return httpx.put(
        f"{srv.server_url}/api/v1/manager/tasks/{task_id}/frames/1",
        params={"filename": filename},
        content=data,
        headers={
            "Authorization": f"Bearer {srv.secrets.manager_token}",
            "X-Flamenco-SHA256": sha256(data),
        },
    )


@pytest.mark.parametrize(
    ("settings", "filename", "data", "detail"),
    [
        (
            {},
            "frame_000001.png",
            png()[:-30],
            "Frame 1 (frame_000001.png) is truncated: the PNG has no IEND chunk.",
        ),
        ({}, "frame_000001.png", b"", "Frame 1 (frame_000001.png) is empty (0 bytes)."),
        (
            {"output_format": "PNG"},
            "frame_000001.jpg",
            png(),
            "Frame 1 (frame_000001.jpg) is not PNG, the job's output format.",
        ),
        (
            {"check_blank": True},
            "frame_000001.png",
            png((0, 0, 0)),
            "Frame 1 (frame_000001.png) is blank: every pixel has the same value.",
        ),
    ],
    ids=["truncated", "empty", "wrong-format", "blank"],
)
def test_a_bad_frame_is_a_422_and_nothing_of_it_is_kept(
    srv: TestFarm,
    http: httpx.Client,
    scene_sha: str,
    settings: dict[str, Any],
    filename: str,
    data: bytes,
    detail: str,
) -> None:
    job_id, task_id = leased(srv, http, scene_sha, **settings)
    response = put_frame(srv, task_id, filename, data)
    assert (response.status_code, response.json()) == (422, {"detail": detail})
    assert http.get(f"/api/v1/jobs/{job_id}/frames").json() == []
    output_dir = Path(http.get(f"/api/v1/jobs/{job_id}").json()["output_dir"])
    assert not output_dir.exists() or list(output_dir.iterdir()) == []
    missing = http.post("/api/v1/blobs/missing", json={"hashes": [sha256(data)]}).json()
    assert missing["missing"] == [sha256(data)]
    assert list((srv.root / "server" / "blobs" / "tmp").iterdir()) == []


def test_a_whole_frame_is_stored(srv: TestFarm, http: httpx.Client, scene_sha: str) -> None:
    """The control: the same routes and settings take a whole, varied PNG."""
    job_id, task_id = leased(srv, http, scene_sha, output_format="PNG", check_blank=True)
    response = put_frame(srv, task_id, "frame_000001.png", png())
    assert response.status_code == 201, response.text
    (frame,) = http.get(f"/api/v1/jobs/{job_id}/frames").json()
    assert (frame["frame"], frame["width"], frame["height"]) == (1, 16, 8)
