"""The bounded cache counts the kept bytes of uploads that may resume: a Worker's frame half
uploaded to its Manager takes room like any blob, and room for its rest is made when it
resumes. Real files in a real folder."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

from flamenco.blob_cache import BoundedBlobStore

KB = 1000


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
