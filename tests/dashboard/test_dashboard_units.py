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
from flamenco.core.runs import task_runs
from flamenco.dashboard.archive import stream_zip
from flamenco.dashboard.login import safe_next
from flamenco.dashboard.sessions import SessionStore
from flamenco.dashboard.timing import duration_text, job_timing, runs_of, timeline_svg
from flamenco.dashboard.views import allowed_actions, embed_json

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def at(seconds: float) -> str:
    return (T0 + timedelta(seconds=seconds)).isoformat()


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


def test_runs_come_from_the_servers_json() -> None:
    answer = [
        {"task_id": "a", "worker": "w1", "start": at(0), "end": at(4), "outcome": "completed"},
        {
            "task_id": "b",
            "worker": "w2",
            "start": "2026-01-01T12:00:02",
            "end": None,
            "outcome": "running",
        },
    ]
    runs = runs_of(answer)
    assert [(r.task_id, r.worker, r.outcome, r.end) for r in runs] == [
        ("a", "w1", "completed", T0 + timedelta(seconds=4)),
        ("b", "w2", "running", None),
    ]
    assert runs[1].seconds(T0 + timedelta(seconds=5)) == 3  # a time without offset is UTC


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
    runs = task_runs([("a", "active", "<w1>", at(0)), ("a", "completed", "<w1>", at(4))])
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
    assert allowed_actions("active") == ["pause", "cancel", "requeue", "requeue-failed", "delete"]
    assert allowed_actions("paused") == ["resume", "cancel", "delete"]
    assert allowed_actions("failed") == ["requeue", "requeue-failed", "delete"]
