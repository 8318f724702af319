"""The Server's services called directly, on a real SQLite file and a real PostgreSQL."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy

from flamenco import wire
from flamenco.config import ServerSettings
from flamenco.core.states import JobStatus, TaskStatus
from flamenco.db import Base
from flamenco.server.models import ManagerRow
from flamenco.server.services import ServerServices, build_services

BLEND = Path(__file__).resolve().parents[3] / "shared" / "blend-corpus" / "basic_file.blend"
POSTGRES_URL = os.environ.get(
    "FLAMENCO_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def _reset_postgres(url: str) -> None:
    try:
        engine = sqlalchemy.create_engine(url)
        Base.metadata.drop_all(engine)
        engine.dispose()
    except sqlalchemy.exc.OperationalError as exc:
        pytest.fail(f"PostgreSQL is needed for these tests and is not reachable: {exc}")


@pytest.fixture(params=["sqlite", "postgres"])
def svc(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ServerServices]:
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


def _manager(svc: ServerServices, name: str) -> ManagerRow:
    token = svc.auth.create_manager(name)
    return svc.auth.manager_for_token(token)


def _job(svc: ServerServices, frames: str, chunk: int = 1, priority: int = 50) -> wire.Job:
    assert BLEND.is_file(), f"the blend corpus is missing at {BLEND}"
    sha = svc.blobs.put_file(BLEND)
    sub = wire.JobSubmission(
        name=f"job {frames}",
        priority=priority,
        files={"s.blend": sha},
        settings={"blend": "s.blend", "frames": frames, "chunk_size": chunk},
    )
    return svc.jobs.submit(sub, submitter="alice")


def _update(task_id: str, status: TaskStatus | None = None, **fields: object) -> wire.TaskUpdate:
    return wire.TaskUpdate(update_id=uuid.uuid4().hex, task_id=task_id, status=status, **fields)


def _sync(svc: ServerServices, manager: ManagerRow, want: int = 0, held: list[str] | None = None):
    return svc.leases.sync(manager, wire.ManagerSync(want=want, held=held or []))


def test_tasks_are_leased_by_priority_then_age(svc: ServerServices) -> None:
    manager = _manager(svc, "site")
    low = _job(svc, "1-2", priority=10)
    high = _job(svc, "1-2", priority=90)
    leases = _sync(svc, manager, want=3).leases
    assert [(lease.job_id, lease.frames) for lease in leases] == [
        (high.id, [1]),
        (high.id, [2]),
        (low.id, [1]),
    ]
    assert svc.jobs.get(high.id).status == JobStatus.ACTIVE
    assert _sync(svc, manager, want=5).leases[0].job_id == low.id
    assert _sync(svc, manager, want=5).leases == []


def test_updates_complete_the_job_and_replays_change_nothing(svc: ServerServices) -> None:
    manager = _manager(svc, "site")
    job = _job(svc, "1-4", chunk=2)
    leases = _sync(svc, manager, want=2).leases
    for lease in leases:
        done = _update(lease.task_id, TaskStatus.COMPLETED, worker="w1", log=["Saved: frame"])
        assert svc.leases.apply_updates(manager, [done, done]) == [done.update_id] * 2
    tasks = svc.jobs.tasks(job.id)
    assert [t.status for t in tasks] == [TaskStatus.COMPLETED] * 2
    assert svc.jobs.get(job.id).status == JobStatus.COMPLETED
    # A replay of the first update after the job ended is acknowledged and ignored.
    again = _update(leases[0].task_id, TaskStatus.ACTIVE)
    svc.leases.apply_updates(manager, [again])
    assert svc.jobs.tasks(job.id)[0].status == TaskStatus.COMPLETED


def test_an_expired_lease_goes_to_another_manager_and_the_first_completion_wins(
    svc: ServerServices,
) -> None:
    late, other = _manager(svc, "late"), _manager(svc, "other")
    job = _job(svc, "1")
    svc.leases.lease_timeout = timedelta(0)  # the first lease is expired as soon as it is made
    (first,) = _sync(svc, late, want=1).leases
    svc.leases.lease_timeout = timedelta(minutes=5)
    (second,) = _sync(svc, other, want=1).leases
    assert second.task_id == first.task_id
    assert _sync(svc, late, held=[first.task_id]).revoked == [first.task_id]

    svc.leases.apply_updates(other, [_update(second.task_id, TaskStatus.COMPLETED, worker="b")])
    svc.leases.apply_updates(late, [_update(first.task_id, TaskStatus.COMPLETED, worker="a")])
    (task,) = svc.jobs.tasks(job.id)
    assert task.status == TaskStatus.COMPLETED and task.worker == "b"


def test_a_failing_task_is_retried_then_fails_the_job(svc: ServerServices) -> None:
    manager = _manager(svc, "site")
    job = _job(svc, "1")
    (lease,) = _sync(svc, manager, want=1).leases
    svc.leases.apply_updates(manager, [_update(lease.task_id, TaskStatus.FAILED, error="boom")])
    (task,) = svc.jobs.tasks(job.id)
    assert task.status == TaskStatus.SOFT_FAILED and task.failure_count == 1

    (again,) = _sync(svc, manager, want=1).leases
    assert again.task_id == lease.task_id
    svc.leases.apply_updates(manager, [_update(lease.task_id, TaskStatus.FAILED, error="boom")])
    (task,) = svc.jobs.tasks(job.id)
    assert task.status == TaskStatus.FAILED
    assert svc.jobs.get(job.id).status == JobStatus.FAILED


def test_a_manager_cannot_touch_another_managers_task(svc: ServerServices) -> None:
    owner, intruder = _manager(svc, "owner"), _manager(svc, "intruder")
    job = _job(svc, "1")
    (lease,) = _sync(svc, owner, want=1).leases
    svc.leases.apply_updates(intruder, [_update(lease.task_id, TaskStatus.COMPLETED)])
    assert svc.jobs.tasks(job.id)[0].status == TaskStatus.LEASED
