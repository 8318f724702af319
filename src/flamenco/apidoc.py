"""What the OpenAPI documents of the Server and the Manager declare beyond FastAPI's defaults.

Every error answer of the farm is `{"detail": "One sentence."}` (`web.error_for`), so each
operation declares its error statuses with that one model, `ErrorBody`, instead of FastAPI's
`HTTPValidationError` array. Which statuses an operation declares is derived here, in one place,
from what the operation takes (parameters, a body, a token) and whether it changes something,
so a new route gets them without declaring them by hand. A route declares only the answers its
shape does not tell (`error_answers`: a login's 401, a 415 for a scene that is not a .blend, a 503
when something upstream is away, a 507 when the disk is full).
"""

from __future__ import annotations

import http
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.security import HTTPBearer

from flamenco.security import bearer_token
from flamenco.wire import ErrorBody

USER_TOKEN_SCHEME = "UserToken"
MANAGER_TOKEN_SCHEME = "ManagerToken"
WORKER_TOKEN_SCHEME = "WorkerToken"
METRICS_TOKEN_SCHEME = "MetricsToken"  # read-only: /metrics (flamenco metrics token)
# Machines report what happened (syncs, updates, uploads): nothing they send can conflict.
MACHINE_TOKEN_SCHEMES = frozenset({MANAGER_TOKEN_SCHEME, WORKER_TOKEN_SCHEME})
ERROR_BODY_REF = "#/components/schemas/ErrorBody"
CHANGING_METHODS = frozenset({"post", "put", "patch", "delete"})
WHY = {
    400: "The request is wrong; the sentence says how.",
    401: "The token (or the password or join secret) is missing or wrong.",
    403: "The token is valid but may not do this (only an administrator, or the job's "
    "submitter, may).",
    404: "What the path names does not exist.",
    409: "The change conflicts with the state it finds (a name already taken, a job in a "
    "state the action cannot leave).",
    413: "The request body is larger than this route's limit.",
    415: "The content is of a kind this route does not take.",
    416: "The byte range (Range, or an upload's Content-Range) cannot be served or taken; "
    "the answer's Content-Range says the size.",
    422: "A parameter or the body does not have the form this route takes.",
    429: "Too many attempts; the sentence says when to try again.",
    503: "Something this answer needs is away for now; try again.",
    507: "The service's disk is full; the file was not kept.",
}
BINARY = {"type": "string", "format": "binary"}
# For routes that read their body as a stream themselves (uploads): FastAPI cannot see it.
STREAMED_BODY = {
    "requestBody": {"required": True, "content": {"application/octet-stream": {"schema": BINARY}}}
}
# Frames are images or movies, served by the type their name says (a download when it says
# none); an artifact may be any plain file, so its type is whatever its name says.
FRAME_TYPES = ("image/*", "video/*", "application/octet-stream")
ARTIFACT_TYPES = ("*/*",)
RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait before trying again.",
        "schema": {"type": "string"},
    }
}


class BearerToken(HTTPBearer):
    """The token of the Authorization header, or None, declared in the OpenAPI document as the
    security scheme `name`. A missing token is not refused here: the service that checks it
    says which token it wanted, in its own sentence."""

    def __init__(self, name: str, description: str) -> None:
        super().__init__(scheme_name=name, description=description, auto_error=False)

    async def __call__(self, request: Request) -> str | None:  # type: ignore[override]
        return bearer_token(request.headers.get("authorization"))


def error_answers(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` for the error answers a route's shape does not tell."""
    return {status: {"model": ErrorBody, "description": WHY[status]} for status in statuses}


def body_answer(*media_types: str, status: int = 200) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route that answers with a file or a stream rather than JSON."""
    content = {media_type: {"schema": BINARY} for media_type in media_types}
    return {status: {"description": "The file or stream.", "content": content}}


def derived_error_statuses(method: str, operation: dict[str, Any]) -> set[int]:
    """The error statuses an operation can answer, from its shape: input can be wrong (400,
    422), a body too large (413), a path names something that may not exist (404), a token can
    be missing or wrong (401), a change a person or a joining Worker asks for can conflict
    with the state it finds (409), and a user's token may lack the role for a change (403)."""
    parameters = operation.get("parameters", [])
    has_body = "requestBody" in operation
    security = operation.get("security", [])
    statuses: set[int] = set()
    if parameters or has_body:
        statuses |= {400, 422}
    if has_body:
        statuses.add(413)
    if any(parameter.get("in") == "path" for parameter in parameters):
        statuses.add(404)
    if security:
        statuses.add(401)
    if method in CHANGING_METHODS:
        if not security or any(set(alt) - MACHINE_TOKEN_SCHEMES for alt in security):
            statuses.add(409)
        if any(USER_TOKEN_SCHEME in alt for alt in security):
            statuses.add(403)
    return statuses


def declare_error_answers(document: dict[str, Any]) -> dict[str, Any]:
    """Every operation of `document` declares its error answers with `ErrorBody`: those derived
    from its shape and those its route declared; FastAPI's validation error models go."""
    for operations in document.get("paths", {}).values():
        for method, operation in operations.items():
            responses = operation.setdefault("responses", {})
            declared = {int(s) for s in responses if s.isdigit() and s[0] in "45"}
            for status in sorted(declared | derived_error_statuses(method, operation)):
                described = responses.get(str(status), {}).get("description")
                if status == 422 or not described:  # FastAPI's "Validation Error" says less
                    described = WHY.get(status) or http.HTTPStatus(status).phrase
                responses[str(status)] = {
                    "description": described,
                    "content": {"application/json": {"schema": {"$ref": ERROR_BODY_REF}}},
                    **({"headers": RETRY_AFTER} if status == 429 else {}),
                }
            operation["responses"] = dict(sorted(responses.items()))
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    schemas["ErrorBody"] = ErrorBody.model_json_schema()
    return document


def install_documented_errors(app: FastAPI) -> None:
    """`app`'s OpenAPI document, generated once, with its error answers declared."""
    generate: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = declare_error_answers(generate())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
