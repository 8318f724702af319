"""Server services on a real SQLite file and a real PostgreSQL, for the service tests."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy

from flamenco import wire
from flamenco.config import ServerSettings
from flamenco.core.states import TaskStatus
from flamenco.db import Base
from flamenco.server.models import ManagerRow, User
from flamenco.server.services import ServerServices, build_services
from testdata import CORPUS

BLEND = CORPUS / "basic_file.blend"
POSTGRES_URL = os.environ.get(
    "FLAMENCO_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def _reset_postgres(url: str) -> None:
    try:
        engine = sqlalchemy.create_engine(url)
        Base.metadata.drop_all(engine)
        with engine.begin() as conn:  # the migrations' own table: the next start creates all
            conn.exec_driver_sql("DROP TABLE IF EXISTS alembic_version")
        engine.dispose()
    except sqlalchemy.exc.OperationalError as exc:
        pytest.fail(f"PostgreSQL is needed for these tests and is not reachable: {exc}")


def make_services(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ServerServices]:
    url = ""
    if request.param == "postgres":
        url = POSTGRES_URL
        _reset_postgres(url)
    services = build_services(
        ServerSettings(data_dir=tmp_path / "server", database_url=url, max_task_failures=2)
    )
    services.auth.create_user("alice", "secret")
    yield services
    services.close()


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
