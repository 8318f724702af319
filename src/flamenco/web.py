"""What every HTTP service of the farm shares: error bodies, body-size limits, health."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from flamenco import __version__
from flamenco.aio import Gone
from flamenco.apidoc import error_answers, install_documented_errors
from flamenco.blobs import BlobTooLarge, HashMismatch, UnsafePath
from flamenco.core.frames import quote_for_message
from flamenco.core.ratelimit import retry_after_header
from flamenco.errors import FlamencoError, RangeNotSatisfiable, TooManyRequests, Unavailable

log = logging.getLogger("flamenco.web")

JSON_BODY_LIMIT = 16 * 1024 * 1024


def _sentence(text: str) -> str:
    text = text.strip()
    return text if text.endswith((".", "?", "!")) else text + "."


def describe_validation_error(exc: RequestValidationError) -> str:
    """One sentence for the first problem pydantic found; that is what a user needs to fix."""
    errors = exc.errors()
    if not errors:
        return "The request is invalid."
    first = errors[0]
    # A dict key that is refused comes as (..., key, "[key]"); the message names the key.
    parts = [str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path")]
    if parts[-1:] == ["[key]"]:
        parts = parts[:-2]
    location = ".".join(parts)
    if not location.isprintable() or len(location) > 100:  # a client's keys: one short line
        location = quote_for_message(location, 100)[1:-1]
    message = first.get("msg", "is invalid")
    if first.get("type") == "json_invalid":
        return "The request body is not valid JSON."
    where = f"field '{location}'" if location else "the request body"
    more = f" ({len(errors) - 1} more problems)" if len(errors) > 1 else ""
    return _sentence(f"The request is invalid: {where}: {message}{more}")


M = TypeVar("M", bound=BaseModel)


def parse_json(raw: bytes, model: type[M]) -> M:
    """A body as `model`, for a route that reads it itself; invalid input gets the same 422
    sentence as a body FastAPI parsed."""
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        raise RequestValidationError(
            [{**error, "loc": ("body", *error["loc"])} for error in exc.errors()]
        ) from exc


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": _sentence(message)}, status_code=status, headers=headers)


def error_headers(exc: Exception) -> dict[str, str] | None:
    """Headers an error answer carries besides its sentence: when to try again, for a 429."""
    if isinstance(exc, TooManyRequests):
        return {"Retry-After": retry_after_header(exc.retry_after_s)}
    if isinstance(exc, RangeNotSatisfiable):
        return {"Content-Range": f"bytes */{exc.size}"}
    return None


def error_for(exc: Exception) -> tuple[int, str] | None:
    """The HTTP status and the one sentence for an error the farm's services raise on bad
    input; None for anything else (a bug: 500)."""
    if isinstance(exc, FlamencoError):
        return exc.status_code, exc.message
    if isinstance(exc, HashMismatch | UnsafePath):
        return 400, str(exc)
    if isinstance(exc, BlobTooLarge):
        return 413, str(exc)
    if isinstance(exc, RequestValidationError):
        return 422, describe_validation_error(exc)
    if isinstance(exc, StarletteHTTPException):
        detail = exc.detail if isinstance(exc.detail, str) else "The request failed."
        if exc.status_code == 404 and detail == "Not Found":
            detail = "There is no such address on this service."
        return exc.status_code, detail
    return None


ANSWERED_ERRORS = (
    FlamencoError,
    HashMismatch,
    BlobTooLarge,
    UnsafePath,
    RequestValidationError,
    StarletteHTTPException,
)


def install_error_handlers(app: FastAPI) -> None:
    async def answer(_: Request, exc: Exception) -> JSONResponse:
        status, message = error_for(exc) or (500, "The service failed.")
        return _error(status, message, error_headers(exc))

    for kind in ANSWERED_ERRORS:
        app.add_exception_handler(kind, answer)


LimitFor = Callable[[str, str], int]  # (method, path) -> the most bytes its body may have


class RouteLimits:
    """The body limit of each request: the upload routes (streamed PUTs, named by method and
    route template, e.g. ("PUT", "/api/v1/blobs/{sha256}")) get the upload limit, matched
    exactly; every other request the JSON limit, so that no JSON body is parsed past it."""

    def __init__(
        self,
        uploads: Iterable[tuple[str, str]],
        upload_limit: int,
        json_limit: int = JSON_BODY_LIMIT,
    ) -> None:
        self.uploads = [(method, compile_path(template)[0]) for method, template in uploads]
        self.upload_limit = upload_limit
        self.json_limit = json_limit

    def __call__(self, method: str, path: str) -> int:
        for upload_method, route in self.uploads:
            if method == upload_method and route.match(path):
                return self.upload_limit
        return self.json_limit


def too_large_sentence(limit: int) -> str:
    return f"The request body is larger than the limit of {limit} bytes."


def declared_over(headers: dict[bytes, bytes], limit: int) -> bool:
    """Whether the request's Content-Length says its body is over `limit`."""
    declared = headers.get(b"content-length")
    return declared is not None and declared.isdigit() and int(declared) > limit


class BodyLimit:
    """Refuses request bodies over their route's limit: at once by Content-Length, else (a
    chunked body) as soon as what arrived passes it. Either way the answer is a 413, whatever
    the route would have made of a body cut short."""

    def __init__(self, app: ASGIApp, limit_for: LimitFor) -> None:
        self.app = app
        self.limit_for = limit_for

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["method"], scope["path"])
        too_large = too_large_sentence(limit)
        if declared_over(dict(scope.get("headers") or []), limit):
            await _error(413, too_large)(scope, receive, send)
            return
        received, over, started = 0, False, False

        async def limited_receive() -> Message:
            nonlocal received, over
            message = await receive()
            received += len(message.get("body", b""))
            if received > limit:
                over = True
                raise BlobTooLarge(too_large)
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if over:
                return  # the app's answer to a body cut short: the 413 below replaces it
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except BlobTooLarge:
            if not over:
                raise
        if over and not started:
            await _error(413, too_large)(scope, receive, send)


class Disconnected(Exception):
    """The client went away before its request body arrived."""


async def read_body(receive: Receive, limit: int) -> bytes:
    """The whole request body; BlobTooLarge as soon as what arrived passes `limit`."""
    chunks = []
    received = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise Disconnected
        chunk = message.get("body", b"")
        received += len(chunk)
        if received > limit:
            raise BlobTooLarge(too_large_sentence(limit))
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


JsonHandler = Callable[[dict[bytes, bytes], bytes, Gone], Awaitable[bytes]]


def gone_of(receive: Receive) -> Gone:
    """`Gone` for a request whose body was read. The server cancels no handler when its client
    leaves; a long poll asks before it takes work, so that no task goes to a closed connection.
    The receive is stepped once, in place: the server answers a disconnect at once, and a
    receive that would wait is closed. No task and no turn of the loop (a busy Manager asks
    thousands of times a second), and nothing can change between the answer and the use."""

    async def gone() -> bool:
        step = receive().__await__()
        try:
            step.send(None)
        except StopIteration as answered:
            return bool(answered.value.get("type") == "http.disconnect")
        step.close()  # it would have waited: the client is still there
        return False

    return gone


class RawJsonRoutes:
    """A few busy JSON endpoints, answered before the framework sees the request.

    FastAPI's routing, dependencies and middleware stack (its error, telemetry and body-limit
    layers, and ours) cost about a fifth of the Manager's CPU on a Worker sync, its busiest
    call by far, so `FarmApp` hands these requests here before any of them. A handler gets
    the headers, the whole body and a `Gone` for its client, and returns the reply's JSON.
    What the skipped layers did is done here the same way: the body limit of the route
    (`limit_for`, a 413 with BodyLimit's sentence), the statuses and sentences of every other
    route for its errors (`error_for`); anything else propagates, and uvicorn answers 500 and
    logs it, as elsewhere.
    """

    def __init__(self, routes: dict[tuple[str, str], JsonHandler], limit_for: LimitFor) -> None:
        self.routes = routes
        self.limits = {route: limit_for(*route) for route in routes}

    async def serve(
        self,
        route: tuple[str, str],
        handler: JsonHandler,
        scope: Scope,
        receive: Receive,
        send: Send,
    ) -> None:
        limit = self.limits[route]
        headers = dict(scope["headers"])
        try:
            if declared_over(headers, limit):
                raise BlobTooLarge(too_large_sentence(limit))
            reply = await handler(headers, await read_body(receive, limit), gone_of(receive))
        except Disconnected:
            return
        except ANSWERED_ERRORS as exc:
            status, message = error_for(exc) or (500, "The service failed.")
            await _error(status, message, error_headers(exc))(scope, receive, send)
            return
        length = str(len(reply)).encode()
        start_headers = [(b"content-type", b"application/json"), (b"content-length", length)]
        await send({"type": "http.response.start", "status": 200, "headers": start_headers})
        await send({"type": "http.response.body", "body": reply})


class FarmApp(FastAPI):
    """FastAPI, with the routes of `raw_json_routes` answered before its middleware stack."""

    raw_json_routes: RawJsonRoutes | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        raw = self.raw_json_routes
        if raw is not None and scope["type"] == "http":
            route = (scope["method"], scope["path"])
            handler = raw.routes.get(route)
            if handler is not None:
                await raw.serve(route, handler, scope, receive, send)
                return
        await super().__call__(scope, receive, send)


# What stops a service from serving (a sentence), or None while it can; /healthz asks it.
HealthCheck = Callable[[], Awaitable[str | None]]


async def always_healthy() -> str | None:
    return None


def create_app(
    title: str,
    limit_for: LimitFor | None = None,
    raw_routes: dict[tuple[str, str], JsonHandler] | None = None,
    health: HealthCheck = always_healthy,
    **kwargs: Any,
) -> FastAPI:
    app = FarmApp(title=title, version=__version__, **kwargs)
    install_error_handlers(app)
    install_documented_errors(app)
    limit_for = limit_for or RouteLimits((), 0)
    if raw_routes:
        app.raw_json_routes = RawJsonRoutes(raw_routes, limit_for)
    app.add_middleware(BodyLimit, limit_for=limit_for)

    @app.get("/api/v1/version")
    def version() -> dict[str, str]:
        return {"name": title, "version": __version__}

    # No token: a load balancer or a service manager asks it. 503 with the reason when the
    # service cannot serve (the Server's database, the Dashboard's Server).
    @app.get("/healthz", responses=error_answers(503))
    async def healthz() -> dict[str, str]:
        problem = await health()
        if problem is not None:
            raise Unavailable(problem)
        return {"name": title, "status": "ok"}

    return app
