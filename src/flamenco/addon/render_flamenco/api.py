"""Talking to the Flamenco Server with Python's standard library only (no bpy here).

Every failure becomes a FlamencoError whose text is one sentence an artist can act on.
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from .resume import resume_delay, upload_content_range
from .trust import (
    TrustError,
    client_context,
    https_only_sentence,
    speaks_tls,
    untrusted_sentence,
    verification_failure,
)

TIMEOUT_S = 30.0
UPLOAD_CHUNK = 1024 * 1024
USER_AGENT = "render_flamenco (Blender add-on)"
CA_HINT = "set its CA bundle in the add-on's preferences"

Progress = Callable[[int], None]


class FlamencoError(Exception):
    """Something went wrong; str() is one sentence for the artist."""


class ApiError(FlamencoError):
    """The Server answered with an error status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class Unreachable(FlamencoError):
    """The Server could not be reached at all."""


def _sentence(text: str) -> str:
    text = text.strip()
    return text if text.endswith((".", "?", "!")) else text + "."


def normalise_url(url: str) -> str:
    """The Server's base URL without a trailing slash; 'host:9999' gets http:// in front."""
    url = url.strip().rstrip("/")
    if not url:
        raise FlamencoError("Set the Flamenco Server URL in the add-on's preferences first.")
    if "://" not in url:
        url = "http://" + url
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise FlamencoError(f"The Server URL '{url}' is not an http:// or https:// address.")
    return url


def dashboard_url(server_url: str, job_id: str = "") -> str:
    """The Dashboard runs on the Server's host, port 8888; a job's page is /jobs/<id>."""
    parts = urllib.parse.urlsplit(normalise_url(server_url))
    host = parts.hostname or "localhost"
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    path = "/jobs/" + urllib.parse.quote(job_id, safe="") if job_id else "/"
    return urllib.parse.urlunsplit((parts.scheme, f"{host}:8888", path, "", ""))


def _reason(error: urllib.error.HTTPError) -> str:
    try:
        detail = json.loads(error.read().decode("utf-8", "replace")).get("detail")
    except (ValueError, AttributeError, OSError):
        detail = None
    if isinstance(detail, str) and detail.strip():
        return _sentence(detail)
    return f"The Server answered with HTTP status {error.code}."


class Server:
    """A Flamenco Server, as one user (the API token) sees it."""

    def __init__(
        self, url: str, token: str, timeout: float = TIMEOUT_S, ca_bundle: str = ""
    ) -> None:
        self.url = normalise_url(url)
        self.token = token.strip()
        self.timeout = timeout
        self.ca_bundle = ca_bundle.strip()
        self._context: ssl.SSLContext | None = None

    def _tls(self) -> ssl.SSLContext:
        """Certificates are verified: against the CA bundle preference, else the system's."""
        if self._context is None:
            try:
                self._context = client_context(self.ca_bundle)
            except TrustError as exc:
                raise FlamencoError(f"{exc} Fix it in the add-on's preferences.") from exc
        return self._context

    def request(
        self,
        method: str,
        path: str,
        data: bytes | Iterator[bytes] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        """Send one request; return the decoded JSON answer (None when it is empty)."""
        all_headers = {"User-Agent": USER_AGENT, "Accept": "application/json", **(headers or {})}
        if self.token:
            all_headers["Authorization"] = f"Bearer {self.token}"
        req = urllib.request.Request(self.url + path, data=data, headers=all_headers, method=method)
        context = self._tls() if self.url.startswith("https:") else None
        try:
            with urllib.request.urlopen(req, timeout=self.timeout, context=context) as response:
                body = response.read()
        except urllib.error.HTTPError as exc:
            raise self._api_error(exc) from exc
        except (urllib.error.URLError, OSError) as exc:
            raise self._unreachable(exc) from exc
        if not body:
            return None
        try:
            return json.loads(body)
        except ValueError as exc:
            raise FlamencoError(
                f"The answer from {self.url} is not JSON; is this a Flamenco Server?"
            ) from exc

    def _unreachable(self, exc: BaseException) -> FlamencoError:
        parts = urllib.parse.urlsplit(self.url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        host_port = f"{parts.hostname}:{port}"
        failure = verification_failure(exc)
        if failure is not None:
            return Unreachable(untrusted_sentence(host_port, failure, CA_HINT))
        reason: Any = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        # A TLS service drops a plain HTTP request unanswered; ask its port if it speaks TLS.
        dropped = isinstance(reason, ConnectionResetError | http.client.RemoteDisconnected)
        if parts.scheme == "http" and dropped and speaks_tls(parts.hostname or "", port):
            return Unreachable(https_only_sentence(host_port))
        return Unreachable(f"The Flamenco Server at {self.url} cannot be reached ({_why(exc)}).")

    def _api_error(self, exc: urllib.error.HTTPError) -> ApiError:
        if exc.code == 401:
            return ApiError(
                401,
                "The Flamenco Server refused the API token; "
                "check the token in the add-on's preferences.",
            )
        if exc.code == 404 and not exc.headers.get("content-type", "").startswith(
            "application/json"
        ):
            return ApiError(404, f"{self.url} does not look like a Flamenco Server (HTTP 404).")
        return ApiError(exc.code, _reason(exc))

    def get(self, path: str) -> Any:
        return self.request("GET", path)

    def post(self, path: str, payload: Any) -> Any:
        body = json.dumps(payload).encode("utf-8")
        return self.request("POST", path, body, {"Content-Type": "application/json"})

    def upload_blob(self, source: Path, sha256: str, progress: Progress | None = None) -> None:
        """Stream a file to PUT /api/v1/blobs/{sha256}; the Server checks the hash. A dropped
        connection resumes where the Server's kept bytes end (GET …/upload, Content-Range),
        with back-off (resume.py)."""
        size, offset, failures, progress_at_failure = source.stat().st_size, 0, 0, -1
        while True:
            position = offset

            def chunks(start: int = offset) -> Iterator[bytes]:
                nonlocal position
                with source.open("rb") as f:
                    f.seek(start)
                    while chunk := f.read(UPLOAD_CHUNK):
                        yield chunk
                        position += len(chunk)
                        if progress is not None:
                            progress(len(chunk))

            headers = {
                "Content-Type": "application/octet-stream",
                "Content-Length": str(size - offset),
                "Content-Range": upload_content_range(offset, size),
            }
            try:
                answer = self.request("PUT", f"/api/v1/blobs/{sha256}", chunks(), headers)
                if not (isinstance(answer, dict) and "offset" in answer):  # 202: not all in
                    return
                failure: FlamencoError = Unreachable("The upload arrived incomplete.")
            except Unreachable as exc:
                failure = exc
            except ApiError as exc:
                if not (offset and exc.status in (409, 416)):
                    raise
                failure, offset, position = exc, 0, 0  # the kept bytes went: start over
            while True:  # back off, then ask where to resume, until the Server answers
                if position > progress_at_failure:
                    failures = 0
                progress_at_failure, failures = position, failures + 1
                delay = resume_delay(failures)
                if delay is None:
                    raise failure
                time.sleep(delay)
                try:
                    kept = self.get(f"/api/v1/blobs/{sha256}/upload")
                    break
                except Unreachable as exc:
                    failure = exc
            if kept.get("complete"):
                return  # it all arrived; only the answer was lost
            offset = int(kept["offset"])

    # ---- what the add-on asks -----------------------------------------------------------------

    def version(self) -> dict[str, Any]:
        answer = self.get("/api/v1/version")
        if not isinstance(answer, dict) or "version" not in answer:
            raise FlamencoError(f"{self.url} does not look like a Flamenco Server.")
        return answer

    def managers(self) -> list[dict[str, Any]]:
        return list(self.get("/api/v1/managers") or [])

    def job(self, job_id: str) -> dict[str, Any]:
        return self.get("/api/v1/jobs/" + urllib.parse.quote(job_id, safe=""))


def _why(exc: BaseException) -> str:
    reason: Any = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    if isinstance(reason, socket.timeout | TimeoutError):
        return "no answer in time"
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused"
    if isinstance(reason, socket.gaierror):
        return "unknown host name"
    text = getattr(reason, "strerror", None) or str(reason)
    return text.strip().rstrip(".") or reason.__class__.__name__


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def describe_connection(version: dict[str, Any], managers: list[dict[str, Any]]) -> str:
    """One line for the preferences: the Server's version and its Managers."""
    if managers:
        sites = ", ".join(
            f"{m.get('name')} ({m.get('status')}, {_count(len(m.get('workers') or []), 'Worker')})"
            for m in managers
        )
    else:
        sites = "none yet"
    name = version.get("name", "Flamenco Server")
    return f"Connected to {name} {version.get('version')}; Managers: {sites}."


def farm_gpu_backends(managers: list[dict[str, Any]]) -> list[str] | None:
    """The GPU backends (CUDA, OPTIX…) the farm's Workers reported, or None when the Server
    does not report Workers' GPUs at all (then every device type is offered blindly)."""
    backends: set[str] = set()
    reported = False
    for manager in managers:
        for worker in manager.get("workers") or []:
            if "gpus" in worker:
                reported = True
                for gpu in worker.get("gpus") or []:
                    backends.update(str(b).upper() for b in gpu.get("backends") or [])
    return sorted(backends) if reported else None


def device_warning(device: str, managers: list[dict[str, Any]]) -> str:
    """Why the chosen render device may find no Worker, as far as the last check knows."""
    if device == "CPU" or not managers:
        return ""
    backends = farm_gpu_backends(managers)
    if backends is None:
        return ""
    if device == "GPU" and not backends:
        return "No Worker reported a GPU at the last connection check."
    if device != "GPU" and device not in backends:
        return f"No Worker reported a {device} GPU at the last connection check."
    return ""
