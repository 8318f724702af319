"""The Dashboard's pure parts: sessions, timing, timeline, zip streaming, page helpers."""

from __future__ import annotations

import asyncio
import io
import zipfile
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest

from flamenco.client import ApiError
from flamenco.dashboard.app import allowed_actions, embed_json, safe_next
from flamenco.dashboard.archive import stream_zip
from flamenco.dashboard.sessions import SessionStore
from flamenco.dashboard.timing import (
    duration_text,
    job_started,
    job_timing,
    last_run_seconds,
    task_runs,
    timeline_svg,
)

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def at(seconds: float) -> str:
    return (T0 + timedelta(seconds=seconds)).isoformat()


def event(task: str, status: str, s: float, worker: str = "w1", outcome: str = "applied") -> dict:
    return {"task_id": task, "status": status, "outcome": outcome, "worker": worker, "at": at(s)}


# ---- sessions ------------------------------------------------------------------------------


def test_a_session_is_found_by_its_signed_cookie_only() -> None:
    store = SessionStore()
    session, cookie = store.create("alice", "flu_secret", admin=False)
    assert store.get(cookie) is session
    session_id, signature = cookie.split(".")
    assert "flu_secret" not in cookie
    assert store.get(f"{session_id}.{'0' * len(signature)}") is None
    assert store.get(session_id) is None
    assert SessionStore().get(cookie) is None  # another process's key
    store.drop(session.id)
    assert store.get(cookie) is None


def test_an_idle_session_is_forgotten() -> None:
    now = [1000.0]
    store = SessionStore(idle_s=60, clock=lambda: now[0])
    _, cookie = store.create("alice", "t", admin=True)
    now[0] += 59
    assert store.get(cookie) is not None  # in use: its idle time starts again
    now[0] += 61
    assert store.get(cookie) is None
    assert store.sessions == {}


# ---- timing --------------------------------------------------------------------------------


def test_runs_follow_the_applied_reports_and_stopped_tasks() -> None:
    history = [
        event("a", "active", 0),
        event("b", "active", 2, "w2"),
        event("a", "active", 3),  # progress report from the same run
        event("b", "soft-failed", 5, "w2"),
        event("c", "active", 6, "w2"),
        event("a", "completed", 10),
        event("a", "completed", 12, "w9", outcome="ignored"),
        event("b", "active", 11),
    ]
    tasks = {"c": {"status": "canceled", "updated": at(8)}, "b": {"status": "active"}}
    runs = task_runs(history, tasks)
    summary = [(r.task_id, r.worker, r.outcome, r.end and (r.end - T0).seconds) for r in runs]
    assert summary == [
        ("a", "w1", "completed", 10),
        ("b", "w2", "soft-failed", 5),
        ("c", "w2", "canceled", 8),
        ("b", "w1", "running", None),
    ]
    assert last_run_seconds(runs, T0 + timedelta(seconds=20)) == {"a": 10, "b": 9, "c": 2}
    assert job_started(history) == T0


def test_time_left_is_the_average_rate_so_far() -> None:
    now = T0 + timedelta(seconds=100)
    active = {"status": "active", "progress": 0.25, "updated": at(90)}
    assert job_timing(active, T0, now) == (100, 300)
    done = {"status": "completed", "progress": 1.0, "updated": at(40)}
    assert job_timing(done, T0, now) == (40, None)
    assert job_timing({"status": "active", "progress": 0.0, "updated": at(1)}, T0, now) == (
        100,
        None,
    )
    assert job_timing(active, None, now) == (None, None)
    assert [duration_text(s) for s in (None, 0.42, 59, 61, 3725)] == [
        "—",
        "0.4s",
        "59s",
        "1m 01s",
        "1h 02m",
    ]


def test_the_timeline_has_a_bar_per_run_and_escapes_names() -> None:
    runs = task_runs([event("a", "active", 0, "<w1>"), event("a", "completed", 4, "<w1>")])
    svg = timeline_svg(runs, {"a": "render <1>"}, T0 + timedelta(seconds=5))
    assert svg.count('class="tl-run"') == 1
    assert "&lt;w1&gt;" in svg and "render &lt;1&gt;" in svg and "<w1>" not in svg
    assert "No task has started yet" in timeline_svg([], {}, T0)


# ---- zip streaming -------------------------------------------------------------------------


class FakeResponse:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.closed = False

    async def aiter_bytes(self) -> AsyncIterator[bytes]:
        for i in range(0, len(self.data), 100_000):
            yield self.data[i : i + 100_000]

    async def aclose(self) -> None:
        self.closed = True


def test_a_zip_streams_every_file_and_names_the_missing_ones() -> None:
    contents = {"/f/1": b"one" * 200_000, "/f/2": b"two"}
    opened: list[FakeResponse] = []

    async def open_stream(path: str) -> FakeResponse:
        if path not in contents:
            raise ApiError(404, "gone")
        opened.append(FakeResponse(contents[path]))
        return opened[-1]

    async def collect() -> list[bytes]:
        files = [("job/frame_1.png", "/f/1"), ("job/x.png", "/f/3"), ("job/preview.mp4", "/f/2")]
        return [piece async for piece in stream_zip(files, open_stream)]  # type: ignore[arg-type]

    # In a thread of its own: Playwright's tests leave an event loop running in this one.
    with ThreadPoolExecutor(1) as pool:
        pieces = pool.submit(asyncio.run, collect()).result()
    assert len(pieces) > 3  # streamed, not built whole
    with zipfile.ZipFile(io.BytesIO(b"".join(pieces))) as zipped:
        assert zipped.namelist() == ["job/frame_1.png", "job/preview.mp4", "MISSING.txt"]
        assert zipped.read("job/frame_1.png") == contents["/f/1"]
        assert zipped.read("MISSING.txt") == b"job/x.png: gone"
        assert zipped.testzip() is None
    assert all(r.closed for r in opened)


# ---- page helpers --------------------------------------------------------------------------


def test_embedded_json_cannot_end_its_script_element() -> None:
    assert "</script>" not in embed_json({"name": "</script><script>alert(1)</script>"})


@pytest.mark.parametrize(
    ("target", "expected"),
    [("/jobs/a?x=1", "/jobs/a?x=1"), ("//evil.example", "/"), ("https://evil", "/"), (None, "/")],
)
def test_login_only_redirects_within_the_dashboard(target: str | None, expected: str) -> None:
    assert safe_next(target) == expected


def test_allowed_actions_follow_the_servers_rules() -> None:
    assert allowed_actions("active") == ["pause", "cancel", "delete"]
    assert allowed_actions("paused") == ["resume", "cancel", "delete"]
    assert allowed_actions("failed") == ["requeue", "requeue-failed", "delete"]
