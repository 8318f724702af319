"""Server services on a real SQLite file and a real PostgreSQL, for the service tests."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from flamenco import wire
from flamenco.config import ServerSettings
from flamenco.core.states import TaskStatus
from flamenco.server.models import ManagerRow, User
from flamenco.server.services import ServerServices, build_services
from pgkit import postgres_database
from testdata import CORPUS

BLEND = CORPUS / "basic_file.blend"


async def one_chunk(data: bytes) -> AsyncIterator[bytes]:
    """`data` as the body stream a received frame or artifact is read from."""
    yield data


def make_services(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ServerServices]:
    """Services on a SQLite file, or on a PostgreSQL database of the test's own (tests of
    several engineers and runs share the server)."""
    with contextlib.ExitStack() as stack:
        url = stack.enter_context(postgres_database()) if request.param == "postgres" else ""
        services = build_services(
            ServerSettings(data_dir=tmp_path / "server", database_url=url, max_task_failures=2)
        )
        stack.callback(services.close)
        services.auth.create_user("alice", "secret")
        yield services


def add_manager(svc: ServerServices, name: str) -> ManagerRow:
    token = svc.auth.create_manager(name)
    return svc.auth.manager_for_token(token)


def add_job(svc: ServerServices, frames: str, chunk: int = 1, priority: int = 50) -> wire.Job:
    assert BLEND.is_file(), f"the blend corpus is missing at {BLEND}"
    sha = svc.blobs.put_file(BLEND)
    sub = wire.JobSubmission(
        name=f"job {frames}",
        priority=priority,
        files={"s.blend": sha},
        settings={"blend": "s.blend", "frames": frames, "chunk_size": chunk},
    )
    return svc.jobs.submit(sub, submitter="alice")


def task_update(
    task_id: str, status: TaskStatus | None = None, **fields: object
) -> wire.TaskUpdate:
    return wire.TaskUpdate(update_id=uuid.uuid4().hex, task_id=task_id, status=status, **fields)


ONE_CPU_WORKER = [wire.WorkerSummary(name="w1", status="awake", blender_version="5.0.1")]


def lease_sync(
    svc: ServerServices,
    manager: ManagerRow,
    want: int = 0,
    held: list[str] | None = None,
    workers: list[wire.WorkerSummary] | None = None,
) -> wire.ManagerSyncReply:
    """A Manager's sync; by default it has one idle CPU Worker with Blender 5.0.1."""
    request = wire.ManagerSync(
        want=want, held=held or [], workers=ONE_CPU_WORKER if workers is None else workers
    )
    return svc.leases.sync(manager, request)


def alice(svc: ServerServices) -> User:
    return svc.auth.user_for_token(svc.auth.issue_token("alice"))
