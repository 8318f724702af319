"""The bounded cache counts the kept bytes of uploads that may resume: a Worker's frame half
uploaded to its Manager takes room like any blob, and room for its rest is made when it
resumes. Real files in a real folder."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

from starlette.requests import Request

from flamenco.blob_cache import BoundedBlobStore
from flamenco.blobs import UploadBody
from flamenco.resumable import upload_body

KB = 1000
MB = 1000 * KB  # a frame of MBs: its chunks pass the file buffer and reach the disk at once


async def _body(data: bytes) -> AsyncIterator[bytes]:
    yield data


def _source(tmp_path: Path, name: str, size: int) -> Path:
    path = tmp_path / "src" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(os.urandom(size))
    return path


def test_kept_partial_uploads_take_room_in_the_bound(tmp_path: Path) -> None:
    store = BoundedBlobStore(tmp_path / "cache", cap=4 * KB, low_water=1.0)
    old = [store.put_file(_source(tmp_path, name, KB)) for name in "ab"]
    frame = os.urandom(4 * KB)
    sha = hashlib.sha256(frame).hexdigest()

    # Half a frame arrives: with room made for all of it, both older blobs went.
    upload = asyncio.run(store.append_partial(sha, "worker w1", 0, len(frame), _body(frame[:2000])))
    assert upload.kept == 2000
    assert [store.has(h) for h in old] == [False, False]

    # While it is kept, a new blob has to fit beside it.
    c = store.put_file(_source(tmp_path, "c", KB))
    d = store.put_file(_source(tmp_path, "d", KB))
    e = store.put_file(_source(tmp_path, "e", KB))
    assert [store.has(h) for h in (c, d, e)] == [False, True, True]
    assert store.bytes_used + store.partial_size(sha, "worker w1") <= store.cap


def test_resuming_makes_room_for_the_rest(tmp_path: Path) -> None:
    store = BoundedBlobStore(tmp_path / "cache", cap=4 * KB, low_water=1.0)
    frame = os.urandom(3 * KB)
    sha = hashlib.sha256(frame).hexdigest()
    asyncio.run(store.append_partial(sha, "worker w1", 0, len(frame), _body(frame[:1000])))
    a = store.put_file(_source(tmp_path, "a", 2 * KB))  # fits beside the 1 KB kept
    assert store.has(a)
    rest = asyncio.run(
        store.append_partial(sha, "worker w1", 1000, len(frame), _body(frame[1000:]))
    )
    assert not store.has(a)  # the rest of the frame (2 KB) needed its room
    assert store.commit_partial(rest) == sha
    assert store.path(sha).read_bytes() == frame
    assert store.bytes_used == 3 * KB  # counted in the cache once in place


def test_an_arriving_upload_counts_each_byte_once(tmp_path: Path) -> None:
    """Bytes of an upload on their way in are counted by what was made room for, those
    already written by the kept file: never both, so a blob that fits is not evicted."""
    store = BoundedBlobStore(tmp_path / "cache", cap=5 * KB, low_water=1.0)
    a = store.put_file(_source(tmp_path, "a", KB))
    frame = os.urandom(3 * KB)
    kept_b: list[bool] = []

    async def arriving() -> AsyncIterator[bytes]:
        for start in range(0, len(frame), KB):
            yield frame[start : start + KB]
            if start == KB:  # resumed here: 2 KB written, 1 KB to come
                b = store.put_file(_source(tmp_path, "b", KB))  # 1 + 2 + 1 + 1 = 5 KB: fits
                kept_b.append(store.has(b))

    upload = asyncio.run(store.append_partial(_sha(frame), "worker w1", 0, len(frame), arriving()))
    assert upload.kept == len(frame)
    assert kept_b == [True]
    assert store.has(a), "nothing had to go: the cache never held more than its bound"
    assert store.commit_partial(upload) == _sha(frame)


def _folder_bytes(folder: Path) -> int:
    """As `du` counts: a kept upload and its attempt are one file under two names."""
    files = {}
    for path in folder.rglob("*"):
        if path.is_file():
            info = path.stat()
            files[(info.st_dev, info.st_ino)] = info.st_size
    return sum(files.values())


def _upload_request(data: bytes) -> Request:
    """A Worker's whole frame in one PUT that may resume (its Content-Range, as it sends)."""
    headers = [
        (b"content-length", str(len(data)).encode()),
        (b"content-range", f"bytes 0-{len(data) - 1}/{len(data)}".encode()),
    ]
    sent = False

    async def receive() -> dict:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": data, "more_body": False}

    return Request({"type": "http", "method": "PUT", "headers": headers}, receive)


def test_a_frame_taken_in_after_its_upload_stays_within_the_bound_while_it_is_copied(
    tmp_path: Path,
) -> None:
    """The Manager's intake of a frame: the completed upload is read into its blob while
    the kept upload still lies on disk. Room for that copy is made first."""
    folder = tmp_path / "cache"
    store = BoundedBlobStore(folder, cap=4 * MB, low_water=1.0)
    older = [store.put_file(_source(tmp_path, name, 1500 * KB)) for name in "ab"]
    frame = os.urandom(2 * MB)
    sha = hashlib.sha256(frame).hexdigest()
    largest = 0

    async def intake() -> str:
        nonlocal largest
        body = await upload_body(_upload_request(frame), store, sha, "worker w1")
        assert isinstance(body, UploadBody) and body.size == len(frame)

        async def measured() -> AsyncIterator[bytes]:
            nonlocal largest
            async for chunk in body.chunks:
                yield chunk
                largest = max(largest, _folder_bytes(folder))  # the chunk is written now

        return await store.put_stream(measured(), sha, size_hint=body.size)

    assert asyncio.run(intake()) == sha
    assert largest > 2 * MB, "the copy was measured while the kept upload lay beside it"
    assert largest <= store.cap
    assert [store.has(h) for h in older] == [False, False]
    assert store.path(sha).read_bytes() == frame
    assert _folder_bytes(folder) == store.bytes_used == 2 * MB


def test_two_frames_arriving_at_once_stay_within_the_bound(tmp_path: Path) -> None:
    """Two Workers upload at once: the second makes room for the first one's rest too."""
    folder = tmp_path / "cache"
    store = BoundedBlobStore(folder, cap=4 * KB, low_water=1.0)
    older = [store.put_file(_source(tmp_path, name, 1500)) for name in "ab"]
    first, second = os.urandom(1500), os.urandom(1500)
    largest = 0

    async def uploads() -> None:
        nonlocal largest
        halfway, second_in = asyncio.Event(), asyncio.Event()

        async def slow(data: bytes) -> AsyncIterator[bytes]:
            nonlocal largest
            yield data[:500]
            halfway.set()
            await second_in.wait()
            yield data[500:]
            await asyncio.sleep(0)  # the second part is written once this resumes
            largest = max(largest, _folder_bytes(folder))

        async def both() -> None:
            upload = asyncio.create_task(
                store.append_partial(_sha(first), "worker w1", 0, 1500, slow(first))
            )
            await halfway.wait()
            await store.append_partial(_sha(second), "worker w2", 0, 1500, _body(second))
            second_in.set()
            await upload

        await both()

    asyncio.run(uploads())
    assert largest >= 2 * 1500, "measured with both uploads on disk"
    assert largest <= store.cap
    assert [store.has(h) for h in older] == [False, False]


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
