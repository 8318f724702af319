"""A Manager's batch of task updates: one transaction, each update applied once.

Services called directly, on SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from serverkit import add_job, add_manager, lease_sync, make_services, task_update

from flamenco.core.states import JobStatus, TaskStatus
from flamenco.server import transitions
from flamenco.server.leases import LeaseService
from flamenco.server.services import ServerServices


@pytest.fixture(params=["sqlite", "postgres"])
def svc(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ServerServices]:
    yield from make_services(request, tmp_path)


def outcomes(svc: ServerServices, job_id: str) -> Counter[tuple[str, str, str]]:
    return Counter((e.task_id, e.status, e.outcome) for e in svc.jobs.history(job_id))


def test_a_batch_applies_each_update_once_however_often_its_id_comes(
    svc: ServerServices,
) -> None:
    manager = add_manager(svc, "site")
    job = add_job(svc, "1-2")
    first, second = lease_sync(svc, manager, want=2).leases
    active = task_update(first.task_id, TaskStatus.ACTIVE, worker="w1", log=["started"])
    done = task_update(first.task_id, TaskStatus.COMPLETED, worker="w1")
    batch = [active, active, done, done]
    assert svc.leases.apply_updates(manager, batch) == [u.update_id for u in batch]
    # Replayed later with a new one: acknowledged, and only the new one counts.
    other = task_update(second.task_id, TaskStatus.COMPLETED, worker="w1")
    assert svc.leases.apply_updates(manager, [done, other, active]) == [
        done.update_id,
        other.update_id,
        active.update_id,
    ]
    assert outcomes(svc, job.id) == Counter(
        {
            (first.task_id, TaskStatus.ACTIVE, "applied"): 1,
            (first.task_id, TaskStatus.COMPLETED, "applied"): 1,
            (second.task_id, TaskStatus.COMPLETED, "applied"): 1,
        }
    )
    assert svc.jobs.task_log(job.id, first.task_id) == "started\n"
    assert svc.jobs.get(job.id).status == JobStatus.COMPLETED


def test_a_batch_refreshes_each_job_it_touched_once(
    svc: ServerServices, monkeypatch: pytest.MonkeyPatch
) -> None:
    manager = add_manager(svc, "site")
    job = add_job(svc, "1-3")
    leases = lease_sync(svc, manager, want=3).leases
    refreshed: list[str] = []
    original = transitions.refresh_job_status

    def counting(s: Any, job_id: str, max_failed_tasks: int = 0) -> None:
        refreshed.append(job_id)
        original(s, job_id, max_failed_tasks)

    monkeypatch.setattr(transitions, "refresh_job_status", counting)
    batch = [
        task_update(lease.task_id, status, worker="w1")
        for lease in leases
        for status in (TaskStatus.ACTIVE, TaskStatus.COMPLETED)
    ]
    svc.leases.apply_updates(manager, batch)
    assert refreshed == [job.id]
    assert svc.jobs.get(job.id).status == JobStatus.COMPLETED


def test_a_late_report_in_a_batch_is_recorded_and_ignored_while_the_rest_applies(
    svc: ServerServices,
) -> None:
    late, other = add_manager(svc, "late"), add_manager(svc, "other")
    job = add_job(svc, "1-2")
    svc.leases.lease_timeout = timedelta(0)  # the late Manager's lease expires at once
    (lost,) = lease_sync(svc, late, want=1).leases
    svc.leases.lease_timeout = timedelta(minutes=5)
    (taken,) = lease_sync(svc, other, want=1).leases
    (kept,) = lease_sync(svc, late, want=1).leases
    assert taken.task_id == lost.task_id and kept.task_id != lost.task_id
    svc.leases.apply_updates(other, [task_update(taken.task_id, TaskStatus.COMPLETED, worker="b")])

    svc.leases.apply_updates(
        late,
        [
            task_update(lost.task_id, TaskStatus.COMPLETED, worker="a"),
            task_update(kept.task_id, TaskStatus.COMPLETED, worker="a"),
        ],
    )
    assert outcomes(svc, job.id) == Counter(
        {
            (lost.task_id, TaskStatus.COMPLETED, "applied"): 1,
            (lost.task_id, TaskStatus.COMPLETED, "ignored"): 1,
            (kept.task_id, TaskStatus.COMPLETED, "applied"): 1,
        }
    )
    workers = {t.id: t.worker for t in svc.jobs.tasks(job.id)}
    assert workers == {lost.task_id: "b", kept.task_id: "a"}


def test_a_batch_that_races_its_own_replay_is_applied_once(
    svc: ServerServices, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Manager sent the batch again while the first try was still being applied: the
    first try recorded the ids first, and the second finds that out only when it commits."""
    manager = add_manager(svc, "site")
    job = add_job(svc, "1")
    (lease,) = lease_sync(svc, manager, want=1).leases
    done = task_update(lease.task_id, TaskStatus.COMPLETED, worker="w1")
    svc.leases.apply_updates(manager, [done])
    original = LeaseService._fresh
    calls = []

    def blind_once(s: Any, updates: list[Any]) -> list[Any]:
        calls.append(len(updates))
        return list(updates) if len(calls) == 1 else original(s, updates)

    monkeypatch.setattr(LeaseService, "_fresh", staticmethod(blind_once))
    assert svc.leases.apply_updates(manager, [done]) == [done.update_id]
    assert calls == [1, 1]
    assert outcomes(svc, job.id) == Counter({(lease.task_id, TaskStatus.COMPLETED, "applied"): 1})
