"""Two uploads of one blob by one user at the same time (two submissions sharing a texture,
both told it is missing), against a real Server: both succeed and the blob is whole. They
share one partial file; before they took turns, the second truncated the first's file and put
it into place, and the first then failed (a 500: its file was gone)."""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Iterator

import httpx

from farmkit import TestFarm

DATA = os.urandom(300_000)
SHA = hashlib.sha256(DATA).hexdigest()
WAIT_S = 30


def test_two_uploads_of_one_blob_at_once_both_succeed_and_store_it_whole(
    srv: TestFarm, http: httpx.Client
) -> None:
    first_half_sent, second_all_sent, go_on = (
        threading.Event(),
        threading.Event(),
        threading.Event(),
    )
    answers: dict[str, httpx.Response] = {}

    def first_body() -> Iterator[bytes]:
        yield DATA[:100_000]
        first_half_sent.set()  # asked for more: the first part went out
        assert go_on.wait(WAIT_S)
        yield DATA[100_000:]

    def second_body() -> Iterator[bytes]:
        yield DATA
        second_all_sent.set()

    def upload(name: str, body: Iterator[bytes]) -> None:
        headers = {
            "Authorization": f"Bearer {srv.token}",
            "Content-Range": f"bytes 0-*/{len(DATA)}",
        }
        with httpx.Client(base_url=srv.server_url, headers=headers, timeout=WAIT_S) as client:
            answers[name] = client.put(f"/api/v1/blobs/{SHA}", content=body)

    first = threading.Thread(target=upload, args=("first", first_body()))
    second = threading.Thread(target=upload, args=("second", second_body()))
    first.start()
    try:
        assert first_half_sent.wait(WAIT_S)
        second.start()
        assert second_all_sent.wait(WAIT_S)
    finally:
        go_on.set()
        first.join(WAIT_S)
        second.join(WAIT_S)
    assert answers["first"].status_code == 201, answers["first"].text
    assert answers["second"].status_code == 201, answers["second"].text
    assert answers["first"].json() == answers["second"].json() == {"sha256": SHA, "size": len(DATA)}
    assert http.get(f"/api/v1/blobs/{SHA}").content == DATA
