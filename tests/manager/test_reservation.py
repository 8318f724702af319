"""A Worker may reserve its next task while it renders; the Manager keeps count of both.

Real Server and Manager processes; the Worker is spoken for over HTTP, step by step, so that
each answer can be checked.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import httpx

from farmkit import TestFarm, wait_until


def submit(farm: TestFarm, scene: Path, frames: str) -> str:
    done = farm.cli("submit", str(scene), "--json", "--frames", frames, "--chunk", "1")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)["id"]


class FakeWorker:
    def __init__(self, farm: TestFarm) -> None:
        self.url = farm.manager_url
        self.headers = farm.join_worker("w")

    def sync(self, **fields: Any) -> dict[str, Any]:
        reply = httpx.post(
            f"{self.url}/api/v1/worker/sync", json=fields, headers=self.headers, timeout=30
        )
        assert reply.status_code == 200, reply.text
        return reply.json()


def task_of(reply: dict[str, Any]) -> str | None:
    return reply["assignment"]["task_id"] if reply["assignment"] else None


def completed(task_id: str) -> dict[str, Any]:
    return {"update_id": uuid.uuid4().hex, "task_id": task_id, "status": "completed"}


def test_a_worker_reserves_one_next_task_and_a_cancel_takes_both(
    farm: TestFarm, demo_scene: Path
) -> None:
    farm.start_server()
    farm.start_manager()
    worker = FakeWorker(farm)
    job = submit(farm, demo_scene, "1-4")

    first = task_of(worker.sync(want_task=True, wait_s=20))
    assert first is not None
    # While rendering `first` it asks for its next task: it gets one, and only one.
    second = task_of(worker.sync(want_task=True, wait_s=5, running_task_id=first))
    assert second not in (None, first)
    assert task_of(worker.sync(want_task=True, running_task_id=first, next_task_id=second)) is None
    # The answer that carried `second` got lost: asking again brings it again, not a third.
    assert task_of(worker.sync(want_task=True, running_task_id=first)) == second

    # `first` done (its completion rides along), `second` runs: it may reserve a third.
    reply = worker.sync(
        want_task=True, wait_s=5, running_task_id=second, updates=[completed(first)]
    )
    assert len(reply["applied"]) == 1
    third = task_of(reply)
    assert third not in (None, first, second)
    wait_until(
        lambda: {t.id: t.status for t in farm.tasks(job)}[first] == "completed",
        30,
        "the first task completed on the Server",
    )

    assert farm.cli("jobs", "cancel", job).returncode == 0
    canceled: set[str] = set()

    def both_canceled() -> bool:
        reply = worker.sync(running_task_id=second, next_task_id=third)
        canceled.update(reply["cancel"])
        return {second, third} <= canceled

    wait_until(both_canceled, 30, "the running and the reserved task canceled")
