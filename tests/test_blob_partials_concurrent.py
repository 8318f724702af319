"""Two uploads of one blob by one uploader at once (two submissions sharing a texture): each
request writes and commits through its own name for the kept bytes, so the second, starting
from byte 0, never truncates nor commits the first one's file. Real files in a real folder;
the two requests' bodies are interleaved by hand."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

from flamenco.blobs import BlobStore

DATA = os.urandom(300_000)
SHA = hashlib.sha256(DATA).hexdigest()
HALF = len(DATA) // 2


async def _parts(*parts: bytes, between: asyncio.Event | None = None) -> AsyncIterator[bytes]:
    for index, part in enumerate(parts):
        if index and between is not None:
            await between.wait()
        yield part


def _leftovers(store: BlobStore) -> list[str]:
    return sorted(path.name for path in (store.root / "tmp").iterdir())


def test_a_second_upload_from_zero_leaves_the_first_whole(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "blobs")
    first_may_go_on = asyncio.Event()

    async def both() -> tuple[str, str]:
        first = asyncio.create_task(
            store.append_partial(
                SHA,
                "user a",
                0,
                len(DATA),
                _parts(DATA[:HALF], DATA[HALF:], between=first_may_go_on),
            )
        )
        while store.partial_size(SHA, "user a") < HALF:  # the first request's half is in
            await asyncio.sleep(0)
        second = await store.append_partial(SHA, "user a", 0, len(DATA), _parts(DATA))
        first_may_go_on.set()
        return store.commit_partial(second), store.commit_partial(await first)

    assert asyncio.run(both()) == (SHA, SHA)
    assert store.path(SHA).read_bytes() == DATA
    assert _leftovers(store) == []


def test_a_resumed_upload_goes_on_with_the_newest_kept_bytes(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "blobs")

    async def cut_twice() -> str:
        first = await store.append_partial(SHA, "user a", 0, len(DATA), _parts(DATA[:1000]))
        second = await store.append_partial(SHA, "user a", 0, len(DATA), _parts(DATA[:HALF]))
        assert (first.kept, second.kept) == (1000, HALF)
        assert store.partial_size(SHA, "user a") == HALF  # what the newest attempt kept
        rest = await store.append_partial(SHA, "user a", HALF, len(DATA), _parts(DATA[HALF:]))
        return store.commit_partial(rest)

    assert asyncio.run(cut_twice()) == SHA
    assert store.path(SHA).read_bytes() == DATA
    assert _leftovers(store) == []
