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
import importlib.util
import sys
import time
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
from flamenco.transfers import (
    TRANSFER_STALL_S,
    Resumption,
    TransferCounters,
    file_chunks,
    upload_headers,
)

M = TypeVar("M", bound=BaseModel)

# httpcore asks for the optional sniffio with an `import` inside a function, several times a
# request; without it installed every try searched sys.path again (35 µs each, a percent of
# a busy Manager's CPU). Marked missing, the import fails at once, as it would anyway.
if importlib.util.find_spec("sniffio") is None:
    sys.modules.setdefault("sniffio", None)  # type: ignore[arg-type]


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


def http_options(base_url: str, token: str, timeout: float, ca_bundle: str) -> dict[str, Any]:
    """What the synchronous and the asynchronous client are both made with."""
    return {
        "base_url": base_url.rstrip("/"),
        "headers": auth_headers(token),
        "timeout": timeout,
        "verify": client_context(ca_bundle),
    }


def transfer_timeout(timeout: float, stall_s: float) -> httpx.Timeout:
    """Streamed transfers: silent for `stall_s` counts as dropped (then resumed)."""
    return httpx.Timeout(timeout, read=stall_s, write=stall_s)


JSON_HEADERS = {"Content-Type": "application/json"}


def _body(model: BaseModel | None) -> dict[str, Any] | None:
    return None if model is None else model.model_dump(mode="json")


class AsyncApi:
    """Async JSON client used by the Manager and the Worker."""

    def __init__(
        self,
        base_url: str,
        token: str = "",
        timeout: float = 30.0,
        ca_bundle: str = "",
        transfer_stall_s: float = TRANSFER_STALL_S,
    ) -> None:
        self.http = httpx.AsyncClient(**http_options(base_url, token, timeout, ca_bundle))
        self.transfer_timeout = transfer_timeout(timeout, transfer_stall_s)
        self.transfers = TransferCounters()
        self._unfinished: set[str] = set()  # uploads given up on: ask where to resume first

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
        body: BaseModel | str | None = None,
        timeout: float | None = None,
    ) -> M:
        """`body` is a model, or its JSON text already made (sent as it is)."""
        extra: dict[str, Any] = {"timeout": timeout} if timeout is not None else {}
        if body is not None:  # pydantic's own JSON: no detour through dicts and the json module
            content = body if isinstance(body, str) else body.model_dump_json()
            extra |= {"content": content, "headers": JSON_HEADERS}
        response = await self.request(method, path, **extra)
        return reply.model_validate_json(response.content)

    async def upload_file(
        self, path: str, source: Path, sha256: str, params: dict[str, Any] | None = None
    ) -> httpx.Response:
        """PUT a file; a dropped connection resumes where the other side's kept bytes end
        (`GET /api/v1/blobs/{sha}/upload`, then `Content-Range: bytes N-*/TOTAL`). One this
        client gave up on resumes too when it is tried again (the outboxes retry)."""
        size, offset = source.stat().st_size, 0
        resumption = Resumption(f"Upload of {source.name} ({sha256[:12]})")
        if sha256 in self._unfinished:
            with contextlib.suppress(httpx.TransportError):  # else the PUT tells
                offset = await self._kept_offset(sha256)
        while True:
            position = offset
            try:

                async def chunks(start: int = offset) -> AsyncIterator[bytes]:
                    nonlocal position
                    for chunk in file_chunks(source, start, self.transfers):
                        position += len(chunk)
                        yield chunk

                response = check(
                    await self.http.put(
                        path,
                        content=chunks(),
                        headers=upload_headers(sha256, offset, size),
                        params=params,
                        timeout=self.transfer_timeout,
                    )
                )
                if response.status_code != 202:  # 202: not all of it arrived
                    self._unfinished.discard(sha256)
                    return response
                failure: Exception = ApiError(202, "The upload arrived incomplete.")
            except httpx.TransportError as exc:
                failure = exc
            except ApiError as exc:
                if not (offset and exc.status in (409, 416)):
                    raise
                failure = exc  # the kept bytes went (a restarted receiver): start over
                offset = position = 0
            while True:  # back off, then ask where to resume, until it answers
                delay = resumption.next_delay(position, failure)
                if delay is None:
                    self._unfinished.add(sha256)
                    if isinstance(failure, httpx.TransportError):
                        raise await self._unreachable(failure) from failure
                    raise failure
                await asyncio.sleep(delay)
                try:
                    resumed = await self._kept_offset(sha256)
                    break
                except httpx.TransportError as exc:
                    failure = exc
            self.transfers.resent += max(0, position - resumed)
            offset = resumed

    async def _kept_offset(self, sha256: str) -> int:
        """Where the other side's kept bytes of an upload end (0 if it cannot say: an older
        service, say); raises httpx.TransportError when it cannot be reached."""
        self.transfers.resumes += 1
        try:
            answer = check(
                await self.http.get(f"/api/v1/blobs/{sha256}/upload", timeout=self.transfer_timeout)
            )
            return wire_offset(answer)
        except (ApiError, ValueError, KeyError):
            return 0

    async def _open_blob(self, path: str, start: int) -> httpx.Response:
        """The answer to GET path from byte `start` on, its body not read yet."""
        headers = {"Range": f"bytes={start}-"} if start else {}
        request = self.http.build_request(
            "GET", path, headers=headers, timeout=self.transfer_timeout
        )
        response = await self.http.send(request, stream=True)
        if response.is_error:
            await response.aread()
            await response.aclose()
            raise ApiError(response.status_code, _reason(response))
        if start and response.status_code != 206:
            await response.aclose()
            raise ApiError(502, f"The answer to a download resumed at byte {start} was whole.")
        return response

    async def _blob_bytes(
        self, path: str, response: httpx.Response, size: int | None
    ) -> AsyncIterator[bytes]:
        """A blob's bytes, resuming with `Range: bytes=N-` when the connection drops."""
        received = 0
        resumption = Resumption(f"Download of {path.rsplit('/', 1)[-1][:12]}")
        try:
            while True:
                try:
                    async for chunk in response.aiter_raw():
                        received += len(chunk)
                        self.transfers.received += len(chunk)
                        yield chunk
                    if size is None or received >= size:
                        return
                    raise httpx.RemoteProtocolError("The download ended early.")
                except httpx.TransportError as exc:
                    await response.aclose()
                    failure: httpx.TransportError = exc
                while True:
                    delay = resumption.next_delay(received, failure)
                    if delay is None:
                        raise await self._unreachable(failure) from failure
                    await asyncio.sleep(delay)
                    try:
                        response = await self._open_blob(path, received)
                        self.transfers.resumes += 1
                        break
                    except httpx.TransportError as exc:
                        failure = exc
        finally:
            await response.aclose()

    async def download_blob(self, sha256: str, store: BlobStore) -> None:
        """Stream a blob into the store; the store checks the bytes against the hash. A
        dropped connection resumes from the bytes already received (Range). An answer that
        does not begin within the stall time is asked for again with back-off: a Manager
        fetching a big file from its Server sends nothing until it has it all."""
        path = f"/api/v1/blobs/{sha256}"
        waiting = Resumption(f"Download of {sha256[:12]}")
        while True:
            try:
                response = await self._open_blob(path, 0)
                break
            except httpx.TimeoutException as exc:
                delay = waiting.next_delay(0, exc)
                if delay is None:
                    raise await self._unreachable(exc) from exc
                await asyncio.sleep(delay)
            except httpx.TransportError as exc:
                raise await self._unreachable(exc) from exc
        length = response.headers.get("content-length", "")
        size = int(length) if length.isdigit() else None
        await store.put_stream(
            self._blob_bytes(path, response, size), expected=sha256, size_hint=size
        )

    async def close(self) -> None:
        await self.http.aclose()


class SyncApi:
    """Blocking client used by the CLI."""

    def __init__(
        self,
        base_url: str,
        token: str = "",
        timeout: float = 60.0,
        ca_bundle: str = "",
        transfer_stall_s: float = TRANSFER_STALL_S,
    ) -> None:
        self.http = httpx.Client(**http_options(base_url, token, timeout, ca_bundle))
        self.transfer_timeout = transfer_timeout(timeout, transfer_stall_s)
        self.transfers = TransferCounters()

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
        """PUT a blob; a dropped connection resumes where the Server's kept bytes end."""
        size, offset = source.stat().st_size, 0
        resumption = Resumption(f"Upload of {source.name} ({sha256[:12]})")
        while True:
            position = offset

            def chunks(start: int = offset) -> Iterator[bytes]:
                nonlocal position
                for chunk in file_chunks(source, start, self.transfers, progress):
                    position += len(chunk)
                    yield chunk

            try:
                response = check(
                    self.http.put(
                        f"/api/v1/blobs/{sha256}",
                        content=chunks(),
                        headers=upload_headers(sha256, offset, size),
                        timeout=self.transfer_timeout,
                    )
                )
                if response.status_code != 202:  # 202: not all of it arrived
                    return
                failure: Exception = ApiError(202, "The upload arrived incomplete.")
            except httpx.TransportError as exc:
                failure = exc
            except ApiError as exc:
                if not (offset and exc.status in (409, 416)):
                    raise
                failure = exc  # the kept bytes went: start over
                offset = position = 0
            while True:  # back off, then ask where to resume, until it answers
                delay = resumption.next_delay(position, failure)
                if delay is None:
                    if isinstance(failure, httpx.TransportError):
                        raise self._unreachable(failure) from failure
                    raise failure
                time.sleep(delay)
                try:
                    answer = self.http.get(
                        f"/api/v1/blobs/{sha256}/upload", timeout=self.transfer_timeout
                    )
                    break
                except httpx.TransportError as exc:
                    failure = exc
            self.transfers.resumes += 1
            kept = check(answer).json()
            if kept.get("complete"):
                return  # it all arrived; only the answer was lost
            self.transfers.resent += max(0, position - int(kept["offset"]))
            offset = int(kept["offset"])


def wire_offset(answer: httpx.Response) -> int:
    """Where an upload resumes: the offset of a `GET …/blobs/{sha}/upload` answer."""
    return int(answer.json()["offset"])


def api_path(*parts: str | int) -> str:
    """`/api/v1/` plus the parts, each escaped: ids typed by users may hold any character."""
    return "/api/v1/" + "/".join(quote(str(part), safe="") for part in parts)
