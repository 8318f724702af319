"""The Dashboard's side of the Server's API: one HTTP client, and short-lived shared answers.

Every call carries the API token of the session it serves. Answers about jobs (a job, a
page of its tasks, the runs of its timeline, its frames) are kept for a few seconds and
shared by all sessions, so that many people watching a job of 10,000 tasks ask the Server
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

from flamenco.client import ApiError, Unreachable, auth_headers, check, transport_failure_async
from flamenco.tls import client_context

T = TypeVar("T")


class Upstream:
    def __init__(self, server_url: str, timeout: float = 30.0, ca_bundle: str = "") -> None:
        self.url = server_url.rstrip("/")
        self.http = httpx.AsyncClient(
            base_url=self.url,
            timeout=httpx.Timeout(timeout, connect=5.0),
            limits=httpx.Limits(max_connections=200, max_keepalive_connections=20),
            verify=client_context(ca_bundle),
        )

    async def _unreachable(self, exc: httpx.TransportError) -> Unreachable:
        fallback = f"The Server at {self.url} cannot be reached ({exc.__class__.__name__})."
        return await transport_failure_async(self.http.base_url, exc, fallback)

    async def request(self, token: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = await self.http.request(method, path, headers=auth_headers(token), **kwargs)
        except httpx.TransportError as exc:
            raise await self._unreachable(exc) from exc
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
            raise await self._unreachable(exc) from exc
        if response.is_error:
            await response.aread()
            await response.aclose()
            check(response)
        return response

    async def login(self, username: str, password: str, client_address: str) -> str:
        """A token for the user. The browser's address goes along, so that the Server limits
        failed logins per browser rather than per Dashboard (it trusts X-Forwarded-For from
        the addresses in its FORWARDED_ALLOW_IPS: by default, this machine)."""
        try:
            response = await self.http.post(
                "/api/v1/login",
                json={"username": username, "password": password},
                headers={"X-Forwarded-For": client_address} if client_address else None,
            )
        except httpx.TransportError as exc:
            raise await self._unreachable(exc) from exc
        return check(response).json()["token"]

    async def server_problem(self) -> str | None:
        """Why the Dashboard cannot serve (its /healthz): the Server's health, asked with no
        token; None while the Server answers that it can serve."""
        try:
            check(await self.http.get("/healthz", timeout=5.0))
        except httpx.TransportError as exc:
            return str(await self._unreachable(exc))
        except ApiError as exc:
            return f"The Server at {self.url} cannot serve: {exc.message}"
        return None

    async def close(self) -> None:
        await self.http.aclose()


@dataclass
class _Entry:
    value: Any
    fetched: float  # when its fetch started
    generation: int
    cost: float  # how long its fetch took


class JobCache:
    """Answers about jobs, kept until an event changes the job or `max_age_s` has passed."""

    COST_FACTOR = 4.0

    def __init__(self, max_age_s: float = 3.0, max_entries: int = 128) -> None:
        self.max_age_s = max_age_s
        self.max_entries = max_entries
        self.entries: OrderedDict[tuple[str, str], _Entry] = OrderedDict()
        self.generations: dict[str, int] = {}
        self.inflight: dict[tuple[str, str, int], asyncio.Future[Any]] = {}

    def invalidate(self, job_id: str) -> None:
        self.generations[job_id] = self.generations.get(job_id, 0) + 1

    async def get(self, job_id: str, kind: str, fetch: Callable[[], Awaitable[T]]) -> T:
        """A fresh answer: from the cache when nothing changed since, else fetched."""
        entry = self._fresh(job_id, kind)
        if entry is not None:
            return entry.value
        return await asyncio.shield(self._start(job_id, kind, fetch))

    async def get_soon(
        self, job_id: str, kind: str, fetch: Callable[[], Awaitable[T]], stale_s: float
    ) -> tuple[T, bool]:
        """(answer, fresh): an outdated answer younger than `stale_s` comes back at once
        while a fresh one is fetched in the background (stale-while-revalidate)."""
        entry = self._fresh(job_id, kind)
        if entry is not None:
            return entry.value, True
        entry = self.entries.get((job_id, kind))
        if entry is not None and time.monotonic() - entry.fetched < stale_s:
            # A job that changes all the time is asked for again at most every few times its
            # own fetch took, so that watching a huge job does not keep the Server busy.
            if time.monotonic() - entry.fetched >= self.COST_FACTOR * entry.cost:
                self._start(job_id, kind, fetch)
            return entry.value, False
        return await asyncio.shield(self._start(job_id, kind, fetch)), True

    def _fresh(self, job_id: str, kind: str) -> _Entry | None:
        key = (job_id, kind)
        entry = self.entries.get(key)
        if entry is None or entry.generation != self.generations.get(job_id, 0):
            return None
        if time.monotonic() - entry.fetched >= self.max_age_s:
            return None
        self.entries.move_to_end(key)
        return entry

    def _start(
        self, job_id: str, kind: str, fetch: Callable[[], Awaitable[T]]
    ) -> asyncio.Future[T]:
        """The fetch of this answer for the job as it is now; one at a time, shared."""
        generation = self.generations.get(job_id, 0)
        flight = (job_id, kind, generation)
        future = self.inflight.get(flight)
        if future is None:
            future = asyncio.ensure_future(self._fetch((job_id, kind), generation, fetch))
            self.inflight[flight] = future

            def done(f: asyncio.Future[Any]) -> None:
                self.inflight.pop(flight, None)
                if not f.cancelled():
                    f.exception()  # retrieved: a failed background refresh is not an error

            future.add_done_callback(done)
        return future

    async def _fetch(self, key: tuple[str, str], generation: int, fetch: Callable[[], Any]) -> Any:
        started = time.monotonic()
        value = await fetch()
        older = self.entries.get(key)
        if older is None or older.generation <= generation:  # never replace a newer answer
            self.entries[key] = _Entry(value, started, generation, time.monotonic() - started)
        self.entries.move_to_end(key)
        while len(self.entries) > self.max_entries:
            self.entries.popitem(last=False)
        return value


class StartTimes:
    """When each job started rendering (its first run); known once, it never changes.

    The Server says it with each job (`Job.started`, recorded as read). For a Server that
    does not, a job that has begun but whose start is unknown is looked up (a page of its
    tasks) again after a few seconds while it runs, and only after it changed once it has
    stopped: twenty jobs per listing, so a farm's history of thousands took minutes of
    listings to learn.
    """

    RUNNING = ("queued", "active", "requeueing")

    def __init__(self, recheck_s: float = 3.0) -> None:
        self.known: dict[str, Any] = {}
        self.checked: dict[str, Any] = {}
        self.recheck_s = recheck_s

    def get(self, job_id: str) -> Any:
        return self.known.get(job_id)

    def _stamp(self, job: dict[str, Any]) -> Any:
        if job["status"] in self.RUNNING:
            return int(time.monotonic() / self.recheck_s)
        return job["updated"]

    def needs_check(self, job: dict[str, Any]) -> bool:
        if job["id"] in self.known:
            return False
        if job["status"] == "queued" and not job["progress"]:
            return False  # nothing ran yet
        return self.checked.get(job["id"]) != self._stamp(job)

    def record(self, job: dict[str, Any], started: Any) -> None:
        self.checked[job["id"]] = self._stamp(job)
        if started is not None:
            self.known[job["id"]] = started


__all__ = ["ApiError", "JobCache", "StartTimes", "Unreachable", "Upstream"]
