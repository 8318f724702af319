"""The Manager's blob route resumes downloads for its Workers: `Range: bytes=N-` is a 206 of
the rest (the Manager fetching the blob from its Server first), a range past the end a 416
with its sentence; a Worker asks where its own upload would resume. A real Server and
Manager."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator

import httpx
import pytest

from farmkit import TestFarm


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestFarm]:
    with TestFarm(tmp_path_factory.mktemp("manager-ranges") / "farm") as farm:
        farm.start_server()
        farm.start_manager()
        yield farm


def test_the_manager_serves_the_rest_of_a_blob_and_refuses_past_its_end(site: TestFarm) -> None:
    data = os.urandom(200_000)
    sha = hashlib.sha256(data).hexdigest()
    uploaded = httpx.put(
        f"{site.server_url}/api/v1/blobs/{sha}",
        content=data,
        headers={"Authorization": f"Bearer {site.token}"},
    )
    assert uploaded.status_code == 201, uploaded.text
    worker = site.join_worker("w1")
    url = f"{site.manager_url}/api/v1/blobs/{sha}"

    rest = httpx.get(url, headers={**worker, "Range": "bytes=150000-"}, timeout=30)
    assert rest.status_code == 206, rest.text
    assert rest.headers["content-range"] == f"bytes 150000-{len(data) - 1}/{len(data)}"
    assert rest.content == data[150_000:]

    past = httpx.get(url, headers={**worker, "Range": f"bytes={len(data)}-"}, timeout=30)
    assert past.status_code == 416
    assert past.json() == {
        "detail": f"The range starts at byte {len(data)}, but the file has only {len(data)} bytes."
    }
    assert past.headers["content-range"] == f"bytes */{len(data)}"

    kept = httpx.get(f"{url}/upload", headers=worker, timeout=30)
    assert kept.json() == {"sha256": sha, "offset": 0, "complete": True}
    assert httpx.get(f"{url}/upload", timeout=30).status_code == 401  # a Worker's question
