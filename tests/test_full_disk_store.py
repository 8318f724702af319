"""A full disk never corrupts a blob store: the write fails with ENOSPC, nothing half-written
stays, and what was stored before still reads back whole. A real 2 MB tmpfs."""

from __future__ import annotations

import asyncio
import errno
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from diskkit import tiny_disk
from flamenco.blob_cache import BoundedBlobStore
from flamenco.blobs import BlobStore, sha256_file


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    with tiny_disk(tmp_path / "disk", "2m") as disk:
        yield disk


def _stored(store: BlobStore) -> list[Path]:
    return [p for p in store.root.rglob("*") if p.is_file()]


@pytest.mark.parametrize("bounded", [False, True], ids=["server-store", "bounded-cache"])
def test_a_full_disk_fails_the_write_and_keeps_the_store_whole(
    small_disk: Path, tmp_path: Path, bounded: bool
) -> None:
    root = small_disk / "blobs"
    store = BoundedBlobStore(root, cap=0) if bounded else BlobStore(root)
    kept_source = tmp_path / "kept.bin"
    kept_source.write_bytes(os.urandom(500_000))
    kept = store.put_file(kept_source)
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(3_000_000))

    with pytest.raises(OSError) as failed:
        store.put_file(big)
    assert failed.value.errno == errno.ENOSPC

    async def chunks() -> AsyncIterator[bytes]:
        data = big.read_bytes()
        for start in range(0, len(data), 256_000):
            yield data[start : start + 256_000]

    with pytest.raises(OSError) as streamed:
        asyncio.run(store.put_stream(chunks(), expected=sha256_file(big)))
    assert streamed.value.errno == errno.ENOSPC

    assert _stored(store) == [store.path(kept)]  # no half-written file anywhere
    assert sha256_file(store.path(kept)) == kept
    assert not store.has(sha256_file(big))
    # Room again: the same store takes a blob that fits.
    small = tmp_path / "small.bin"
    small.write_bytes(os.urandom(100_000))
    assert store.has(store.put_file(small))
