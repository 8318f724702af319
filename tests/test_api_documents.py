"""The Server's and the Manager's OpenAPI documents say what the services really answer.

Every route is in its document (the Worker sync served before FastAPI too), every error answer
is declared with `ErrorBody`, and schemathesis, against a real Server and a real Manager over
sockets with real tokens, finds no 5xx and no answer the documents do not declare.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import hypothesis
import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.routing import APIRoute
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from farmkit import TestFarm, wait_until
from flamenco.apidoc import ERROR_BODY_REF, derived_error_statuses
from flamenco.config import ManagerSettings, ServerSettings
from flamenco.manager.app import build_manager, create_manager_app
from flamenco.server.app import create_server_app
from flamenco.server.services import build_services
from flamenco.web import FarmApp

# ---- the documents, built from the apps ----------------------------------------------------


@pytest.fixture
def server_app(tmp_path: Path) -> Iterator[FastAPI]:
    services = build_services(ServerSettings(data_dir=tmp_path / "server"))
    yield create_server_app(services)
    services.close()


@pytest.fixture
def manager_app(tmp_path: Path) -> Iterator[FastAPI]:
    settings = ManagerSettings(
        data_dir=tmp_path / "manager", server="http://127.0.0.1:9", token="flm_test"
    )
    manager = build_manager(settings)
    yield create_manager_app(manager)
    asyncio.run(manager.service.server.close())
    manager.service.store.close()
    manager.service.outbox.close()


def served_routes(app: FastAPI) -> set[tuple[str, str]]:
    """(method, path) of every route the app answers: FastAPI's and those served before it."""
    routes = {
        (method.lower(), route.path_format)
        for route in app.routes
        if isinstance(route, APIRoute)
        for method in route.methods
    }
    if isinstance(app, FarmApp) and app.raw_json_routes is not None:
        routes |= {(method.lower(), path) for method, path in app.raw_json_routes.routes}
    return routes


def documented_operations(document: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (method, path): operation
        for path, operations in document["paths"].items()
        for method, operation in operations.items()
    }


@pytest.mark.parametrize("component", ["server", "manager"])
def test_every_route_is_documented_with_its_error_answers(
    component: str, request: pytest.FixtureRequest
) -> None:
    app: FastAPI = request.getfixturevalue(f"{component}_app")
    document = app.openapi()
    operations = documented_operations(document)

    assert set(operations) == served_routes(app)
    if component == "manager":
        sync = operations[("post", "/api/v1/worker/sync")]
        assert sync["security"] == [{"WorkerToken": []}]
        body = sync["requestBody"]["content"]["application/json"]["schema"]
        assert body == {"$ref": "#/components/schemas/WorkerSync"}
        answer = sync["responses"]["200"]["content"]["application/json"]["schema"]
        assert answer == {"$ref": "#/components/schemas/WorkerSyncReply"}

    schemas = document["components"]["schemas"]
    assert schemas["ErrorBody"]["properties"] == {"detail": {"title": "Detail", "type": "string"}}
    assert schemas["ErrorBody"]["required"] == ["detail"]
    assert "ValidationError" not in json.dumps(document)
    schemes = document["components"]["securitySchemes"]
    assert all(s == {**s, "type": "http", "scheme": "bearer"} for s in schemes.values())

    for (method, path), operation in operations.items():
        responses = operation["responses"]
        errors = {int(status) for status in responses if status[0] in "45"}
        assert errors >= derived_error_statuses(method, operation), (method, path)
        for status in errors:
            content = responses[str(status)]["content"]
            assert content == {"application/json": {"schema": {"$ref": ERROR_BODY_REF}}}, (
                method,
                path,
                status,
            )
        if path not in ("/api/v1/version", "/healthz") and not path.startswith("/api/v1/addon/"):
            assert 401 in errors, f"{method} {path} takes no token or password"
        for requirement in operation.get("security", []):
            assert set(requirement) <= set(schemes), (method, path)


BODY = {"content": {"application/json": {}}}
PATH_ID = [{"name": "job_id", "in": "path"}]
QUERY = [{"name": "limit", "in": "query"}]
USER = [{"UserToken": []}]
MANAGER = [{"ManagerToken": []}]
WORKER = [{"WorkerToken": []}]
USER_OR_MANAGER = [{"UserToken": []}, {"ManagerToken": []}]


@pytest.mark.parametrize(
    ("method", "operation", "statuses"),
    [
        ("get", {}, set()),
        ("get", {"security": USER}, {401}),
        ("get", {"parameters": QUERY, "security": USER}, {400, 401, 422}),
        ("get", {"parameters": PATH_ID, "security": USER_OR_MANAGER}, {400, 401, 404, 422}),
        ("post", {"requestBody": BODY}, {400, 409, 413, 422}),
        ("post", {"requestBody": BODY, "security": USER}, {400, 401, 403, 409, 413, 422}),
        ("post", {"requestBody": BODY, "security": MANAGER}, {400, 401, 413, 422}),
        ("put", {"parameters": PATH_ID, "security": WORKER}, {400, 401, 404, 422}),
        ("post", {"security": USER_OR_MANAGER}, {401, 403, 409}),
        ("delete", {"parameters": PATH_ID, "security": USER}, {400, 401, 403, 404, 409, 422}),
    ],
)
def test_error_statuses_follow_from_an_operations_shape(
    method: str, operation: dict[str, Any], statuses: set[int]
) -> None:
    assert derived_error_statuses(method, operation) == statuses


# ---- schemathesis against a real Server and Manager ----------------------------------------

# Schemathesis's own pytest plugin (`from_fixture`) fails on pytest 9.2 (it reads
# `Function._nodeid`), so each operation gets a Hypothesis test here, through schemathesis's
# strategies and checks. A dozen cases per operation and mode: under a minute for both.
MAX_EXAMPLES = 12
LONG_POLL_CAP_S = 0.2
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
FUZZ_SETTINGS = hypothesis.settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    database=None,
    derandomize=True,
    phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
    suppress_health_check=list(hypothesis.HealthCheck),
)


@pytest.fixture(scope="module")
def fuzzed_farm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestFarm]:
    """A Server and a Manager of their own: the fuzzing changes and deletes what it finds."""
    with TestFarm(tmp_path_factory.mktemp("fuzz") / "farm") as farm:
        farm.start_server()
        farm.start_manager()
        yield farm


def worker_token(farm: TestFarm) -> str:
    assert farm.secrets is not None
    registration = {
        "name": "fuzz-worker",
        "platform": "test",
        "blender_version": "5.0.1",
        "secret": farm.secrets.worker_secret,
    }
    joined = httpx.post(f"{farm.manager_url}/api/v1/workers/register", json=registration)
    assert joined.status_code == 200, joined.text
    return joined.json()["token"]


def metrics_token(farm: TestFarm) -> str:
    """A metrics token, once the farm's Manager knows it too (it learns it from a sync)."""
    headers = {"Authorization": f"Bearer {fresh_admin_token(farm)}"}
    made = httpx.post(f"{farm.server_url}/api/v1/metrics/tokens", headers=headers)
    assert made.status_code == 200, made.text
    token = made.json()["token"]
    wait_until(
        lambda: (
            httpx.get(
                f"{farm.manager_url}/metrics", headers={"Authorization": f"Bearer {token}"}
            ).status_code
            == 200
        ),
        30,
        "the Manager knowing the metrics token",
    )
    return token


def with_short_long_polls(case: schemathesis.Case) -> schemathesis.Case:
    """A sync may be held up to its `wait_s` when there is nothing for it: keep that short,
    so the run stays bounded (holding is tested in tests/server/test_long_poll.py)."""
    body = case.body
    if isinstance(body, dict):
        wait_s = body.get("wait_s")
        if type(wait_s) in (int, float) and LONG_POLL_CAP_S < wait_s <= 60:
            body["wait_s"] = LONG_POLL_CAP_S
    return case


def answers_as_documented(
    operation: schemathesis.APIOperation, mode: schemathesis.GenerationMode, headers: dict
) -> None:
    @FUZZ_SETTINGS
    @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
    def check(case: schemathesis.Case) -> None:
        with_short_long_polls(case).call_and_validate(headers=headers, checks=CHECKS)

    check()


# Operations that end credentials (the caller's own token, any token by its id, a user's
# tokens): fuzzed last, each with a token of its own, so the others run with live tokens.
ENDS_CREDENTIALS = {
    "POST /api/v1/logout",
    "DELETE /api/v1/tokens/{token_id}",
    "PUT /api/v1/users/{name}/password",
    "DELETE /api/v1/users/{name}",
    "POST /api/v1/managers/{name}/revoke",
    "POST /api/v1/managers/{name}/rotate",
}


def fuzz(
    url: str, tokens: dict[str, str], fresh_user_token: Callable[[], str] | None = None
) -> list[str]:
    """Every operation of the document at `url` (but the endless event stream), with valid and
    invalid input, each with the token of its first security scheme; the failures found.
    Those that end credentials come last, each with a `fresh_user_token()`."""
    document = schemathesis.openapi.from_url(f"{url}/openapi.json")
    failures = []
    operations = [r.ok() for r in document.exclude(path="/api/v1/events").get_all_operations()]
    operations.sort(key=lambda operation: operation.label in ENDS_CREDENTIALS)
    for operation in operations:
        definition = operation.definition.raw
        own = fresh_user_token() if operation.label in ENDS_CREDENTIALS and fresh_user_token else ""
        headers = {}
        for scheme in (definition.get("security") or [{}])[0]:
            token = own if own and scheme == "UserToken" else tokens[scheme]
            headers["Authorization"] = f"Bearer {token}"
        modes = [schemathesis.GenerationMode.POSITIVE]
        if definition.get("parameters") or "requestBody" in definition:
            modes.append(schemathesis.GenerationMode.NEGATIVE)  # else there is nothing to spoil
        for mode in modes:
            try:
                answers_as_documented(operation, mode, headers)
            except Exception as exc:  # every failure of every operation, not just the first
                failures.append(f"{operation.label} ({mode.value}): {exc}")
    return failures


def fresh_admin_token(farm: TestFarm) -> str:
    """A new login of the farm's administrator: the fuzzing may have revoked any older one."""
    assert farm.secrets is not None
    login = {"username": "admin", "password": farm.secrets.admin_password}
    answer = httpx.post(f"{farm.server_url}/api/v1/login", json=login)
    assert answer.status_code == 200, answer.text
    return answer.json()["token"]


def a_stored_blob(farm: TestFarm) -> str:
    """The hash of a blob on the farm's Server, so that a download answers with the file."""
    content = b"a blob the fuzzing cannot guess"
    sha = hashlib.sha256(content).hexdigest()
    headers = {"Authorization": f"Bearer {fresh_admin_token(farm)}"}
    stored = httpx.put(f"{farm.server_url}/api/v1/blobs/{sha}", content=content, headers=headers)
    assert stored.status_code == 201, stored.text
    return sha


def status_as_documented(url: str, label: str, token: str, **parts: Any) -> int:
    """One request of `label` with the given parts, checked against the document at `url`."""
    operation = schemathesis.openapi.from_url(f"{url}/openapi.json").find_operation_by_label(label)
    assert operation is not None, label
    headers = {"Authorization": f"Bearer {token}"}
    return operation.Case(**parts).call_and_validate(headers=headers, checks=CHECKS).status_code


def test_the_server_answers_as_its_document_says(fuzzed_farm: TestFarm) -> None:
    assert fuzzed_farm.secrets is not None
    tokens = {
        "UserToken": fuzzed_farm.token,
        "ManagerToken": fuzzed_farm.secrets.manager_token,
        "MetricsToken": metrics_token(fuzzed_farm),
    }
    failures = fuzz(fuzzed_farm.server_url, tokens, lambda: fresh_admin_token(fuzzed_farm))
    assert not failures, "\n\n".join(failures)

    blob = {"sha256": a_stored_blob(fuzzed_farm)}
    download = "GET /api/v1/blobs/{sha256}"
    tokens["UserToken"] = fresh_admin_token(fuzzed_farm)
    for token in (tokens["UserToken"], tokens["ManagerToken"]):
        status = status_as_documented(fuzzed_farm.server_url, download, token, path_parameters=blob)
        assert status == 200


def test_the_manager_answers_as_its_document_says(fuzzed_farm: TestFarm) -> None:
    assert fuzzed_farm.secrets is not None
    worker = worker_token(fuzzed_farm)
    tokens = {
        "WorkerToken": worker,
        "ManagerToken": fuzzed_farm.secrets.manager_token,
        "MetricsToken": metrics_token(fuzzed_farm),
    }
    failures = fuzz(fuzzed_farm.manager_url, tokens)
    assert not failures, "\n\n".join(failures)

    blob = {"sha256": a_stored_blob(fuzzed_farm)}
    download = "GET /api/v1/blobs/{sha256}"
    status = status_as_documented(fuzzed_farm.manager_url, download, worker, path_parameters=blob)
    assert status == 200
