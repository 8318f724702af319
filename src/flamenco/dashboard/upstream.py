"""The Dashboard's side of the Server's API: one HTTP client, and short-lived shared answers.

Every call carries the API token of the session it serves. The answers that are expensive
for the Server to give (all tasks of a job, its whole history) are kept for a few seconds
and shared by all sessions, so that paging through a job of 10,000 tasks asks the Server
once; an event about the job (relayed from the Server's event stream) forgets them at once.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx

from flamenco.client import ApiError, Unreachable, auth_headers, check

T = TypeVar("T")


class Upstream:
    def __init__(self, server_url: str, timeout: float = 30.0) -> None:
        self.url = server_url.rstrip("/")
        self.http = httpx.AsyncClient(
            base_url=self.url,
            timeout=httpx.Timeout(timeout, connect=5.0),
            limits=httpx.Limits(max_connections=200, max_keepalive_connections=20),
        )

    def _unreachable(self, exc: Exception) -> Unreachable:
        return Unreachable(f"The Server at {self.url} cannot be reached ({exc.__class__.__name__}).")

    async def request(self, token: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = await self.http.request(method, path, headers=auth_headers(token), **kwargs)
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from exc
        return check(response)

    async def json(self, token: str, path: str, **kwargs: Any) -> Any:
        return (await self.request(token, "GET", path, **kwargs)).json()

    async def open_stream(
        self, token: str, path: str, timeout: httpx.Timeout | None = None
    ) -> httpx.Response:
        """A streamed GET whose status was checked; the caller must `aclose()` it."""
        request = self.http.build_request(
            "GET", path, headers=auth_headers(token), timeout=timeout or self.http.timeout
        )
        try:
            response = await self.http.send(request, stream=True)
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from exc
        if response.is_error:
            await response.aread()
            await response.aclose()
            check(response)
        return response

    async def login(self, username: str, password: str) -> str:
        try:
            response = await self.http.post(
                "/api/v1/login", json={"username": username, "password": password}
            )
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from exc
        return check(response).json()["token"]

    async def close(self) -> None:
        await self.http.aclose()


@dataclass
class _Entry:
    value: Any
    fetched: float
    generation: int


class JobCache:
    """Answers about jobs, kept until an event changes the job or `max_age_s` has passed."""

    def __init__(self, max_age_s: float = 3.0, max_entries: int = 24) -> None:
        self.max_age_s = max_age_s
        self.max_entries = max_entries
        self.entries: OrderedDict[tuple[str, str], _Entry] = OrderedDict()
        self.generations: dict[str, int] = {}
        self.inflight: dict[tuple[str, str, int], asyncio.Future[Any]] = {}

    def invalidate(self, job_id: str) -> None:
        self.generations[job_id] = self.generations.get(job_id, 0) + 1

    async def get(self, job_id: str, kind: str, fetch: Callable[[], Awaitable[T]]) -> T:
        key = (job_id, kind)
        generation = self.generations.get(job_id, 0)
        entry = self.entries.get(key)
        now = time.monotonic()
        if entry and entry.generation == generation and now - entry.fetched < self.max_age_s:
            self.entries.move_to_end(key)
            return entry.value
        flight = (job_id, kind, generation)
        future = self.inflight.get(flight)
        if future is None:  # one fetch at a time per answer; others wait for it
            future = asyncio.ensure_future(self._fetch(key, generation, fetch))
            self.inflight[flight] = future
            future.add_done_callback(lambda _: self.inflight.pop(flight, None))
        return await asyncio.shield(future)

    async def _fetch(self, key: tuple[str, str], generation: int, fetch: Callable[[], Any]) -> Any:
        started = time.monotonic()
        value = await fetch()
        self.entries[key] = _Entry(value, started, generation)
        self.entries.move_to_end(key)
        while len(self.entries) > self.max_entries:
            self.entries.popitem(last=False)
        return value


class StartTimes:
    """When each job started rendering (its first run); known once, it never changes."""

    def __init__(self, recheck_s: float = 3.0) -> None:
        self.known: dict[str, Any] = {}
        self.checked: dict[str, float] = {}
        self.recheck_s = recheck_s

    def get(self, job_id: str) -> Any:
        return self.known.get(job_id)

    def needs_check(self, job_id: str) -> bool:
        if job_id in self.known:
            return False
        return time.monotonic() - self.checked.get(job_id, -1e9) > self.recheck_s

    def record(self, job_id: str, started: Any) -> None:
        self.checked[job_id] = time.monotonic()
        if started is not None:
            self.known[job_id] = started


__all__ = ["ApiError", "JobCache", "StartTimes", "Unreachable", "Upstream"]
