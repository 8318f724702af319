"""What every HTTP service of the farm shares: error bodies, body-size limits, health."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from flamenco import __version__
from flamenco.blobs import BlobTooLarge, HashMismatch, UnsafePath
from flamenco.errors import FlamencoError

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
    location = ".".join(str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path"))
    message = first.get("msg", "is invalid")
    if first.get("type") == "json_invalid":
        return "The request body is not valid JSON."
    where = f"field '{location}'" if location else "the request body"
    more = f" ({len(errors) - 1} more problems)" if len(errors) > 1 else ""
    return _sentence(f"The request is invalid: {where}: {message}{more}")


M = TypeVar("M", bound=BaseModel)


async def parse_json_body(request: Request, model: type[M]) -> M:
    """The body as `model`, for a route that reads it itself; invalid input gets the same 422
    sentence as a body FastAPI parsed."""
    try:
        return model.model_validate_json(await request.body())
    except ValidationError as exc:
        raise RequestValidationError(
            [{**error, "loc": ("body", *error["loc"])} for error in exc.errors()]
        ) from exc


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"detail": _sentence(message)}, status_code=status)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(FlamencoError)
    async def _flamenco(_: Request, exc: FlamencoError) -> JSONResponse:
        return _error(exc.status_code, exc.message)

    @app.exception_handler(HashMismatch)
    async def _hash(_: Request, exc: HashMismatch) -> JSONResponse:
        return _error(400, str(exc))

    @app.exception_handler(BlobTooLarge)
    async def _large(_: Request, exc: BlobTooLarge) -> JSONResponse:
        return _error(413, str(exc))

    @app.exception_handler(UnsafePath)
    async def _path(_: Request, exc: UnsafePath) -> JSONResponse:
        return _error(400, str(exc))

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return _error(422, describe_validation_error(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else "The request failed."
        if exc.status_code == 404 and detail == "Not Found":
            detail = "There is no such address on this service."
        return _error(exc.status_code, detail)


class BodyLimit:
    """Refuses request bodies over a limit, by Content-Length or while they stream in."""

    def __init__(self, app: ASGIApp, limit_for: Callable[[str], int]) -> None:
        self.app = app
        self.limit_for = limit_for

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            response = _error(413, f"The request body is larger than the limit of {limit} bytes")
            await response(scope, receive, send)
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > limit:
                raise BlobTooLarge(f"The request body is larger than the limit of {limit} bytes.")
            return message

        await self.app(scope, limited_receive, send)


def create_app(title: str, limit_for: Callable[[str], int] | None = None, **kwargs: Any) -> FastAPI:
    app = FastAPI(title=title, version=__version__, **kwargs)
    install_error_handlers(app)
    app.add_middleware(BodyLimit, limit_for=limit_for or (lambda _path: JSON_BODY_LIMIT))

    @app.get("/api/v1/version")
    def version() -> dict[str, str]:
        return {"name": title, "version": __version__}

    return app
