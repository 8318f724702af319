"""HTTP clients for talking upwards: CLI -> Server, Manager -> Server, Worker -> Manager.

One place turns an error response into ApiError carrying the service's one-sentence reason,
and tells transient failures (retry later) from permanent ones (the request is wrong).
Every client verifies HTTPS certificates (tls.client_context), and a failed verification
becomes TlsFailure with one sentence naming the host and the reason; an https:// URL is never
tried in plain HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel

from flamenco.blobs import BlobStore
from flamenco.tls import (
    CA_HINT,
    client_context,
    https_only_sentence,
    speaks_tls,
    untrusted_sentence,
    verification_failure,
)

M = TypeVar("M", bound=BaseModel)
UPLOAD_CHUNK = 1024 * 1024


class ApiError(Exception):
    """The other side answered with an error status; message is its one-sentence reason."""

    def __init__(self, status: int, message: str, retry_after: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.retry_after = retry_after  # the answer's Retry-After header, if it had one

    @property
    def transient(self) -> bool:
        # Authentication and server-side trouble may heal; anything else will fail again.
        return self.status >= 500 or self.status in (401, 408, 425, 429)


class Unreachable(Exception):
    """The other side could not be reached at all."""


class TlsFailure(Unreachable):
    """The connection failed on TLS in a way that trying again will not mend: the other
    side's certificate is not trusted, or an http:// URL points at an HTTPS service."""


def transport_failure(url: httpx.URL, exc: httpx.TransportError, fallback: str) -> Unreachable:
    """What a failed connection to `url` means, as one sentence: TlsFailure when TLS is the
    cause, else Unreachable(fallback). Blocking (it may probe the port): async callers use
    `transport_failure_async`."""
    port = url.port or (443 if url.scheme == "https" else 80)
    host_port = f"{url.host}:{port}"
    failure = verification_failure(exc)
    if failure is not None:
        return TlsFailure(untrusted_sentence(host_port, failure, CA_HINT))
    # A TLS service drops a plain HTTP request unanswered; ask its port whether it speaks TLS.
    dropped = isinstance(exc, httpx.ReadError | httpx.RemoteProtocolError | httpx.WriteError)
    if url.scheme == "http" and dropped and speaks_tls(url.host, port):
        return TlsFailure(https_only_sentence(host_port))
    return Unreachable(fallback)


async def transport_failure_async(
    url: httpx.URL, exc: httpx.TransportError, fallback: str
) -> Unreachable:
    return await asyncio.to_thread(transport_failure, url, exc, fallback)


def _reason(response: httpx.Response) -> str:
    try:
        detail = response.json().get("detail")
    except (ValueError, AttributeError):
        detail = None
    if isinstance(detail, str) and detail:
        return detail
    return f"The request failed with HTTP status {response.status_code}."


def check(response: httpx.Response) -> httpx.Response:
    if response.is_error:
        retry_after = response.headers.get("retry-after")
        raise ApiError(response.status_code, _reason(response), retry_after)
    return response


def auth_headers(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


JSON_HEADERS = {"Content-Type": "application/json"}


def _body(model: BaseModel | None) -> dict[str, Any] | None:
    return None if model is None else model.model_dump(mode="json")


class AsyncApi:
    """Async JSON client used by the Manager and the Worker."""

    def __init__(
        self, base_url: str, token: str = "", timeout: float = 30.0, ca_bundle: str = ""
    ) -> None:
        self.http = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            headers=auth_headers(token),
            timeout=timeout,
            verify=client_context(ca_bundle),
        )

    async def _unreachable(self, exc: httpx.TransportError) -> Unreachable:
        url = self.http.base_url
        return await transport_failure_async(url, exc, f"{url} cannot be reached: {exc!r}.")

    def set_token(self, token: str) -> None:
        self.http.headers.update(auth_headers(token))

    async def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return check(await self.http.request(method, path, **kwargs))
        except httpx.TransportError as exc:
            raise await self._unreachable(exc) from exc

    async def call(
        self,
        method: str,
        path: str,
        reply: type[M],
        body: BaseModel | None = None,
        timeout: float | None = None,
    ) -> M:
        extra: dict[str, Any] = {"timeout": timeout} if timeout is not None else {}
        if body is not None:  # pydantic's own JSON: no detour through dicts and the json module
            extra |= {"content": body.model_dump_json(), "headers": JSON_HEADERS}
        response = await self.request(method, path, **extra)
        return reply.model_validate_json(response.content)

    async def upload_file(
        self, path: str, source: Path, sha256: str, params: dict[str, Any] | None = None
    ) -> httpx.Response:
        async def chunks() -> AsyncIterator[bytes]:
            with source.open("rb") as f:
                while chunk := f.read(UPLOAD_CHUNK):
                    yield chunk

        headers = {"X-Flamenco-SHA256": sha256, "Content-Length": str(source.stat().st_size)}
        return await self.request("PUT", path, content=chunks(), headers=headers, params=params)

    async def download_blob(self, sha256: str, store: BlobStore) -> None:
        """Stream a blob into the store; the store checks the bytes against the hash."""
        try:
            async with self.http.stream("GET", f"/api/v1/blobs/{sha256}") as response:
                if response.is_error:
                    await response.aread()
                    raise ApiError(response.status_code, _reason(response))
                size = response.headers.get("content-length", "")
                await store.put_stream(
                    response.aiter_bytes(),
                    expected=sha256,
                    size_hint=int(size) if size.isdigit() else None,
                )
        except httpx.TransportError as exc:
            raise await self._unreachable(exc) from exc

    async def close(self) -> None:
        await self.http.aclose()


class SyncApi:
    """Blocking client used by the CLI."""

    def __init__(
        self, base_url: str, token: str = "", timeout: float = 60.0, ca_bundle: str = ""
    ) -> None:
        self.http = httpx.Client(
            base_url=base_url.rstrip("/"),
            headers=auth_headers(token),
            timeout=timeout,
            verify=client_context(ca_bundle),
        )

    def _unreachable(self, exc: httpx.TransportError) -> Unreachable:
        url = self.http.base_url
        name = exc.__class__.__name__
        return transport_failure(url, exc, f"The Server at {url} cannot be reached ({name}).")

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return check(self.http.request(method, path, **kwargs))
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from exc

    @contextlib.contextmanager
    def stream_lines(
        self, path: str, params: dict[str, str], read_timeout: float
    ) -> Iterator[Iterator[str]]:
        """The lines of a streamed answer (server-sent events) as they arrive. A stream that
        drops, or stays silent for `read_timeout` s, raises Unreachable from the iterator."""
        timeout = httpx.Timeout(self.http.timeout.connect, read=read_timeout)
        try:
            with self.http.stream("GET", path, params=params, timeout=timeout) as response:
                if response.is_error:
                    response.read()
                    check(response)
                yield response.iter_lines()
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from exc

    def call(self, method: str, path: str, reply: type[M], body: BaseModel | None = None) -> M:
        return reply.model_validate(self.request(method, path, json=_body(body)).json())

    def upload_blob(self, source: Path, sha256: str, progress: Any = None) -> None:
        def chunks() -> Iterator[bytes]:
            with source.open("rb") as f:
                while chunk := f.read(UPLOAD_CHUNK):
                    if progress is not None:
                        progress(len(chunk))
                    yield chunk

        headers = {"Content-Length": str(source.stat().st_size)}
        self.request("PUT", f"/api/v1/blobs/{sha256}", content=chunks(), headers=headers)


def api_path(*parts: str | int) -> str:
    """`/api/v1/` plus the parts, each escaped: ids typed by users may hold any character."""
    return "/api/v1/" + "/".join(quote(str(part), safe="") for part in parts)
