"""The bounded blob cache of Workers and Managers: least recently used out, pinned kept.

Real files in a real folder; the pins are what the Worker and Manager would pass.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from flamenco import wire
from flamenco.blob_cache import BoundedBlobStore
from flamenco.core.sizes import UNLIMITED
from flamenco.outbox import FrameItem, Outbox
from flamenco.worker.cleanup import needed_blobs

KB = 1000


def _file(folder: Path, name: str, size: int = KB) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(os.urandom(size))
    return path


def _cached(store: BoundedBlobStore) -> int:
    """Bytes on disk in the cache folder, half-written blobs included."""
    return sum(p.stat().st_size for p in store.root.rglob("*") if p.is_file())


def _put(store: BoundedBlobStore, tmp_path: Path, name: str, size: int = KB) -> str:
    return store.put_file(_file(tmp_path / "src", name, size))


# low_water=1.0: exactly what must go goes, so that the order shows blob by blob.


def test_the_least_recently_used_blob_goes_first(tmp_path: Path) -> None:
    store = BoundedBlobStore(tmp_path / "cache", cap=3 * KB, low_water=1.0)
    a, b, c = (_put(store, tmp_path, name) for name in "abc")
    store.use(a)  # a is now more recent than b and c
    d = _put(store, tmp_path, "d")
    assert [store.has(x) for x in (a, b, c, d)] == [True, False, True, True]
    store.use(c)
    e = _put(store, tmp_path, "e")
    assert [store.has(x) for x in (a, c, d, e)] == [False, True, True, True]
    assert store.bytes_used == _cached(store) == 3 * KB
    assert store.evictions == 2


def test_a_pinned_blob_is_never_evicted(tmp_path: Path) -> None:
    pinned: dict[str, str] = {}
    store = BoundedBlobStore(tmp_path / "cache", cap=2 * KB, pins=lambda: pinned, low_water=1.0)
    a = _put(store, tmp_path, "a")
    b = _put(store, tmp_path, "b")
    pinned[a] = "job j1 task t1"  # oldest, but a held task needs it
    c = _put(store, tmp_path, "c")
    assert [store.has(x) for x in (a, b, c)] == [True, False, True]
    assert _cached(store) <= 2 * KB


def test_pinned_blobs_over_the_bound_are_kept_with_a_warning_naming_their_tasks(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pinned: dict[str, str] = {}
    store = BoundedBlobStore(
        tmp_path / "cache", cap=2 * KB, pins=lambda: pinned, owner="Worker w", low_water=1.0
    )
    for name, task in (("a", "t1"), ("b", "t1"), ("c", "t2")):
        sha = store.put_file(_file(tmp_path / "src", name))
        pinned[sha] = f"job j1 task {task}"
    with caplog.at_level(logging.WARNING, "flamenco.cache"):
        d = _put(store, tmp_path, "d")
    assert all(store.has(sha) for sha in [*pinned, d])  # the bound never fails a task
    assert store.bytes_used == 4 * KB
    warning = "\n".join(r.getMessage() for r in caplog.records)
    assert "over its bound of 2.0 kB" in warning
    assert "job j1 task t1, job j1 task t2" in warning
    # Once the tasks are done their files go with the next blob.
    pinned.clear()
    e = _put(store, tmp_path, "e")
    assert store.has(e) and store.bytes_used <= 2 * KB


def test_a_download_makes_room_before_its_bytes_arrive(tmp_path: Path) -> None:
    store = BoundedBlobStore(tmp_path / "cache", cap=3 * KB, low_water=1.0)
    for name in "abc":
        _put(store, tmp_path, name)
    data = os.urandom(2 * KB)
    seen_during: list[int] = []

    async def chunks() -> AsyncIterator[bytes]:
        yield data[:KB]
        seen_during.append(_cached(store))
        yield data[KB:]

    sha = asyncio.run(store.put_stream(chunks(), size_hint=len(data)))
    assert store.has(sha)
    # Two old blobs went before the first byte came: the folder never passed its bound.
    assert seen_during and seen_during[0] <= 3 * KB - KB
    assert _cached(store) <= 3 * KB


def test_a_restarted_cache_keeps_the_order_of_use(tmp_path: Path) -> None:
    store = BoundedBlobStore(tmp_path / "cache", cap=3 * KB, low_water=1.0)
    a, b, c = (_put(store, tmp_path, name) for name in "abc")
    for age, sha in ((300, b), (200, c), (100, a)):  # b used longest ago, then c, then a
        os.utime(store.path(sha), (0, store.path(sha).stat().st_mtime - age))
    (store.root / "tmp" / "incoming-leftover").write_bytes(b"x" * KB)  # a crash's half blob
    again = BoundedBlobStore(tmp_path / "cache", cap=3 * KB, low_water=1.0)
    assert again.bytes_used == 3 * KB
    assert not (again.root / "tmp" / "incoming-leftover").exists()
    again.use(c)  # touches the file's time too
    d = _put(again, tmp_path, "d")
    assert [again.has(x) for x in (a, b, c, d)] == [True, False, True, True]
    e = _put(again, tmp_path, "e")
    assert [again.has(x) for x in (a, c, d, e)] == [False, True, True, True]


def test_an_unlimited_cache_keeps_everything(tmp_path: Path) -> None:
    store = BoundedBlobStore(tmp_path / "cache", cap=UNLIMITED)
    blobs = [_put(store, tmp_path, name, 10 * KB) for name in "abcdef"]
    assert all(store.has(sha) for sha in blobs)
    assert store.bytes_used == 60 * KB


def test_a_worker_keeps_its_tasks_files_and_what_its_outbox_must_send(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox.sqlite")
    try:
        store = BoundedBlobStore(tmp_path / "cache", cap=2 * KB, low_water=1.0)
        scene = _put(store, tmp_path, "scene")
        frame = _put(store, tmp_path, "frame")
        outbox.add_frame(FrameItem("t1", 1, frame, "f_0001.png", job_id="j1"))
        running = wire.Assignment(
            task_id="t2",
            job_id="j2",
            job_name="shot",
            name="render 2",
            type="blender",
            frames=[2],
            command={},
            files={"s.blend": scene},
        )
        store.pins = lambda: needed_blobs((running, None), outbox)
        assert store.pins() == {frame: "job j1 task t1", scene: "job j2 task t2"}
        other = _put(store, tmp_path, "other")
        assert store.has(scene) and store.has(frame) and store.has(other)
        # Delivered, the frame may go; the running task's scene still may not.
        outbox.remove([seq for (seq,) in outbox.db.execute("SELECT seq FROM outbox")])
        last = _put(store, tmp_path, "last")
        assert store.has(scene) and store.has(last)
        assert not store.has(frame) and not store.has(other)
    finally:
        outbox.close()


def test_a_full_cache_makes_room_down_to_its_low_water_mark_asking_for_pins_once(
    tmp_path: Path,
) -> None:
    asked = []

    def pins() -> dict[str, str]:
        asked.append(1)
        return {}

    store = BoundedBlobStore(tmp_path / "cache", cap=10 * KB, pins=pins, low_water=0.95)
    first = [_put(store, tmp_path, f"f{i}") for i in range(10)]
    assert asked == []  # full, not over
    _put(store, tmp_path, "g")  # 11 kB wanted: down to 9.5 kB, so two go
    assert asked == [1] and store.bytes_used == 9 * KB
    assert not store.has(first[0]) and not store.has(first[1]) and store.has(first[2])
    _put(store, tmp_path, "h")  # fits again without asking anything
    assert asked == [1] and store.bytes_used == 10 * KB
