"""A task as a Manager holds it (a lease from the Server), for the Manager's queue and store
tests."""

from __future__ import annotations

from datetime import UTC, datetime

from flamenco import wire
from flamenco.manager.store import HeldTask


def held(task_id: str, job_id: str = "j1", priority: int = 50, seq: int = 1) -> HeldTask:
    lease = wire.Lease(
        task_id=task_id,
        job_id=job_id,
        job_name=job_id,
        job_priority=priority,
        type="blender",
        name=task_id,
        frames=[1],
        command={"blend": "scene.blend"},
        files={"scene.blend": "a" * 64},
        lease_expires=datetime(2030, 1, 1, tzinfo=UTC),
    )
    return HeldTask.from_lease(lease, seq)
