"""Transfers that resume, against a real Server: Range downloads (206, 416) and uploads that
append at an offset (202 while incomplete, 409 at the wrong offset, 416 for a range that makes
no sense), each refusal with its sentence; the hash is checked over the whole file."""

from __future__ import annotations

import hashlib
import io
import os
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from PIL import Image

from farmkit import TestFarm
from flamenco.blobs import BlobStore

DATA = os.urandom(300_000)
SHA = hashlib.sha256(DATA).hexdigest()


def put_part(http: httpx.Client, sha: str, body: bytes, offset: int, total: int) -> httpx.Response:
    return http.put(
        f"/api/v1/blobs/{sha}",
        content=body,
        headers={"Content-Range": f"bytes {offset}-*/{total}"},
    )


def offset_of(http: httpx.Client, sha: str) -> dict:
    response = http.get(f"/api/v1/blobs/{sha}/upload")
    assert response.status_code == 200, response.text
    return response.json()


def test_an_upload_resumes_at_the_offset_the_server_keeps(http: httpx.Client) -> None:
    assert offset_of(http, SHA) == {"sha256": SHA, "offset": 0, "complete": False}
    first = put_part(http, SHA, DATA[:100_000], 0, len(DATA))
    assert first.status_code == 202, first.text
    assert first.json()["offset"] == 100_000
    assert offset_of(http, SHA)["offset"] == 100_000

    wrong = put_part(http, SHA, DATA[50_000:], 50_000, len(DATA))
    assert wrong.status_code == 409
    assert wrong.json()["detail"] == (
        "The upload resumes at byte 50000, but 100000 bytes of it are kept here; "
        "resume at byte 100000."
    )
    assert offset_of(http, SHA)["offset"] == 100_000  # the refusal lost nothing

    rest = put_part(http, SHA, DATA[100_000:], 100_000, len(DATA))
    assert rest.status_code == 201, rest.text
    assert rest.json() == {"sha256": SHA, "size": len(DATA)}
    assert offset_of(http, SHA) == {"sha256": SHA, "offset": 0, "complete": True}
    assert http.get(f"/api/v1/blobs/{SHA}").content == DATA


def test_a_download_resumes_with_a_range(http: httpx.Client) -> None:
    assert http.put(f"/api/v1/blobs/{SHA}", content=DATA).status_code == 201
    rest = http.get(f"/api/v1/blobs/{SHA}", headers={"Range": "bytes=123456-"})
    assert rest.status_code == 206
    assert rest.headers["content-range"] == f"bytes 123456-{len(DATA) - 1}/{len(DATA)}"
    assert rest.content == DATA[123456:]
    middle = http.get(f"/api/v1/blobs/{SHA}", headers={"Range": "bytes=10-19"})
    assert (middle.status_code, middle.content) == (206, DATA[10:20])


@pytest.mark.parametrize(
    ("header", "sentence"),
    [
        (
            f"bytes={len(DATA)}-",
            f"The range starts at byte {len(DATA)}, but the file has only {len(DATA)} bytes.",
        ),
        (
            "bytes=0-1,5-6",
            "The Range header 'bytes=0-1,5-6' is not one range of bytes "
            "('bytes=N-' or 'bytes=N-M').",
        ),
    ],
)
def test_a_range_that_cannot_be_served_is_a_416_with_its_sentence(
    http: httpx.Client, header: str, sentence: str
) -> None:
    assert http.put(f"/api/v1/blobs/{SHA}", content=DATA).status_code == 201
    response = http.get(f"/api/v1/blobs/{SHA}", headers={"Range": header})
    assert response.status_code == 416
    assert response.json() == {"detail": sentence}
    assert response.headers["content-range"] == f"bytes */{len(DATA)}"


def test_an_upload_range_that_makes_no_sense_is_a_416(http: httpx.Client) -> None:
    data = os.urandom(1000)
    sha = hashlib.sha256(data).hexdigest()
    response = put_part(http, sha, data, 2000, 1000)
    assert response.status_code == 416
    assert response.json()["detail"] == (
        "The upload resumes at byte 2000, past the end of its 1000 bytes."
    )
    too_much = put_part(http, sha, data + b"extra", 0, 1000)
    assert too_much.status_code == 413
    assert too_much.json()["detail"] == (
        "The upload sends more than the 1000 bytes its Content-Range announced."
    )
    assert http.get(f"/api/v1/blobs/{sha}").status_code == 404


def test_a_resumed_upload_that_hashes_wrong_is_refused_and_starts_over(
    srv: TestFarm, http: httpx.Client
) -> None:
    data = os.urandom(5000)
    claimed = hashlib.sha256(b"something else").hexdigest()
    assert put_part(http, claimed, data[:2000], 0, 5000).status_code == 202
    response = put_part(http, claimed, data[2000:], 2000, 5000)
    assert response.status_code == 400
    assert "not to the announced" in response.json()["detail"]
    assert offset_of(http, claimed) == {"sha256": claimed, "offset": 0, "complete": False}
    assert http.get(f"/api/v1/blobs/{claimed}").status_code == 404
    leftovers = list((srv.root / "server" / "blobs" / "tmp").glob(f"partial-{claimed}*"))
    assert leftovers == []


def test_two_uploads_of_one_blob_by_one_user_at_once_both_succeed(
    srv: TestFarm, http: httpx.Client
) -> None:
    """Two submissions sharing a texture upload it at once: the second, from byte 0, takes
    over the kept bytes without spoiling the first (which once failed with a hash mismatch)."""
    data = os.urandom(400_000)
    sha = hashlib.sha256(data).hexdigest()
    first_may_go_on = threading.Event()

    def first_body() -> Iterator[bytes]:
        yield data[:200_000]
        assert first_may_go_on.wait(timeout=60)
        yield data[200_000:]

    with ThreadPoolExecutor(max_workers=1) as pool:
        first = pool.submit(
            http.put,
            f"/api/v1/blobs/{sha}",
            content=first_body(),
            headers={"Content-Range": f"bytes 0-*/{len(data)}"},
        )
        deadline = time.monotonic() + 30
        while offset_of(http, sha)["offset"] < 200_000:  # the first one's half is kept
            assert time.monotonic() < deadline, "the first upload's bytes never arrived"
        second = put_part(http, sha, data, 0, len(data))
        first_may_go_on.set()
        assert (second.status_code, second.json()) == (201, {"sha256": sha, "size": len(data)})
        answer = first.result(timeout=60)
    assert (answer.status_code, answer.json()) == (201, {"sha256": sha, "size": len(data)})
    assert http.get(f"/api/v1/blobs/{sha}").content == data
    tmp = srv.root / "server" / "blobs" / "tmp"
    assert [p.name for p in tmp.iterdir() if sha in p.name] == []


def test_partial_uploads_nobody_resumed_are_swept(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "blobs")
    old, fresh = store.partial_path(SHA, "user a"), store.partial_path(SHA, "user b")
    old.write_bytes(b"x" * 10)
    fresh.write_bytes(b"y" * 10)
    two_days_ago = time.time() - 2 * 86400
    os.utime(old, (two_days_ago, two_days_ago))
    assert store.sweep_partials() == 1
    assert (old.exists(), fresh.exists()) == (False, True)
    assert store.partial_size(SHA, "user b") == 10
    assert store.partial_size(SHA, "user a") == 0


def whole_png() -> bytes:
    out = io.BytesIO()
    Image.frombytes("RGB", (64, 32), os.urandom(64 * 32 * 3)).save(out, "PNG")
    return out.getvalue()


@pytest.mark.blender  # the job's scene is the demo scene, built by real Blender
def test_a_frame_going_up_resumes_and_is_recorded_once_whole(
    srv: TestFarm, http: httpx.Client, demo_scene: Path
) -> None:
    scene = demo_scene.read_bytes()
    scene_sha = hashlib.sha256(scene).hexdigest()
    assert http.put(f"/api/v1/blobs/{scene_sha}", content=scene).status_code == 201
    body = {
        "name": "resumed frame",
        "priority": 100,
        "files": {"scene.blend": scene_sha},
        "settings": {"blend": "scene.blend", "frames": "1"},
    }
    created = http.post("/api/v1/jobs", json=body)
    assert created.status_code == 201, created.text
    assert srv.secrets is not None
    manager = {"Authorization": f"Bearer {srv.secrets.manager_token}"}
    synced = httpx.post(
        f"{srv.server_url}/api/v1/manager/sync",
        json={"want": 1, "workers": [{"name": "w", "status": "awake", "blender_version": "99.0"}]},
        headers=manager,
    )
    (lease,) = synced.json()["leases"]
    frame = whole_png()
    sha = hashlib.sha256(frame).hexdigest()
    half = len(frame) // 2

    def put(part: bytes, offset: int) -> httpx.Response:
        return httpx.put(
            f"{srv.server_url}/api/v1/manager/tasks/{lease['task_id']}/frames/1",
            params={"filename": "frame_000001.png"},
            content=part,
            headers={
                **manager,
                "X-Flamenco-SHA256": sha,
                "Content-Range": f"bytes {offset}-*/{len(frame)}",
            },
        )

    first = put(frame[:half], 0)
    assert (first.status_code, first.json()["offset"]) == (202, half)
    assert http.get(f"/api/v1/jobs/{lease['job_id']}/frames").json() == []  # not yet
    kept = httpx.get(f"{srv.server_url}/api/v1/blobs/{sha}/upload", headers=manager).json()
    assert kept == {"sha256": sha, "offset": half, "complete": False}
    # The user's uploads are their own: this Manager's kept bytes are not theirs to resume.
    assert http.get(f"/api/v1/blobs/{sha}/upload").json()["offset"] == 0

    rest = put(frame[half:], half)
    assert rest.status_code == 201, rest.text
    frames = http.get(f"/api/v1/jobs/{lease['job_id']}/frames").json()
    assert [(f["frame"], f["sha256"]) for f in frames] == [(1, sha)]
    output_dir = Path(http.get(f"/api/v1/jobs/{lease['job_id']}").json()["output_dir"])
    assert (output_dir / "frame_000001.png").read_bytes() == frame
    assert list((srv.root / "server" / "blobs" / "tmp").glob(f"partial-{sha}*")) == []
