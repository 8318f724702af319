"""The Manager's in-memory queue and its write-behind store (a real SQLite file)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from flamenco import wire
from flamenco.config import ManagerSettings
from flamenco.manager.app import build_manager
from flamenco.manager.queue import TaskQueue
from flamenco.manager.store import HeldTask, ManagerStore, WorkerState
from heldkit import held


def queue_of(*tasks: HeldTask) -> TaskQueue:
    queue = TaskQueue()
    for task in tasks:
        queue.add(task)
    return queue


@pytest.mark.parametrize(
    ("tasks", "warm", "refused", "expected"),
    [
        # lease order within one job
        ([held("a", seq=1), held("b", seq=2)], None, set(), "a"),
        # higher priority first, whatever the lease order
        ([held("a", seq=1), held("b", "j2", priority=90, seq=2)], None, set(), "b"),
        # among equal priorities, the job whose Blender is warm
        ([held("a", seq=1), held("b", "j2", seq=2)], "j2", set(), "b"),
        # a warm job of lower priority does not jump the queue
        ([held("a", priority=90, seq=1), held("b", "j2", seq=2)], "j2", set(), "a"),
        # tasks the Worker may not run are passed over
        ([held("a", seq=1), held("b", seq=2)], None, {"a"}, "b"),
        ([held("a", seq=1), held("b", "j2", seq=2)], "j1", {"a"}, "b"),
        # nothing fits
        ([held("a", seq=1)], None, {"a"}, None),
        # across jobs of one priority: the task leased first
        ([held("b", "j2", seq=5), held("a", "j1", seq=3)], None, set(), "a"),
    ],
)
def test_pick(
    tasks: list[HeldTask], warm: str | None, refused: set[str], expected: str | None
) -> None:
    picked = queue_of(*tasks).pick(lambda t: t.task_id not in refused, warm)
    assert (picked.task_id if picked else None) == expected


def test_a_requeued_task_goes_back_to_its_place_and_removal_empties_the_queue() -> None:
    first, second, third = held("a", seq=1), held("b", seq=2), held("c", seq=3)
    queue = queue_of(second, third)
    queue.add(first)  # back from a lost Worker
    assert queue.pick(lambda t: True, None) is first
    for task in (first, second, third):
        queue.remove(task)
    queue.remove(first)  # twice is harmless
    assert len(queue) == 0 and queue.pick(lambda t: True, None) is None


def test_the_store_writes_behind_and_a_new_store_reads_it_back(tmp_path: Path) -> None:
    path = tmp_path / "manager.sqlite"
    store = ManagerStore(path)
    worker = WorkerState("w1", "render-01", "h" * 64, {"platform": "test"})
    kept, gone = held("a", seq=1), held("b", seq=2)
    kept.state, kept.worker_id, worker.tasks = "assigned", "w1", ["a"]

    async def change() -> None:
        for task in (kept, gone):
            store.task_changed(task)
        store.worker_changed(worker)
        store.task_gone("b")
        await store.saved()  # on disk now, before a crash could forget it

    asyncio.run(change())
    again = ManagerStore(path)  # the first one is never closed: as after a crash
    (task,) = again.load_tasks()
    assert (task.task_id, task.state, task.worker_id, task.seq) == ("a", "assigned", "w1", 1)
    assert task.lease == kept.lease
    (loaded,) = again.load_workers()
    assert (loaded.name, loaded.token_hash, loaded.tasks) == ("render-01", "h" * 64, ["a"])

    async def change_again() -> None:  # rows that exist get their changing columns rewritten
        kept.state, kept.worker_id, worker.tasks = "queued", None, []
        worker.status = "asleep"
        store.task_changed(kept)
        store.worker_changed(worker)
        await store.saved()

    asyncio.run(change_again())
    third = ManagerStore(path)
    (task,) = third.load_tasks()
    assert (task.state, task.worker_id, task.lease) == ("queued", None, kept.lease)
    (loaded,) = third.load_workers()
    assert (loaded.status, loaded.tasks, loaded.token_hash) == ("asleep", [], "h" * 64)


def test_while_tasks_are_scarce_the_worker_that_waited_longer_gets_the_next(
    tmp_path: Path,
) -> None:
    """A new task wakes the Worker that waited longest; a request that arrives before that
    Worker has looked does not take the task from it (it waits in line instead)."""
    settings = ManagerSettings(data_dir=tmp_path, server="http://127.0.0.1:9")

    async def main() -> tuple[str | None, str | None]:
        service = build_manager(settings).service
        tokens = {}
        for name in ("waited", "newcomer"):
            registration = wire.WorkerRegistration(name=name, secret=settings.secret)
            tokens[name] = (await service.register_worker(registration)).token

        async def ask(name: str, wait_s: float) -> str | None:
            worker = service.authenticate_worker(tokens[name])
            reply = await service.worker_sync(
                worker, wire.WorkerSync(want_task=True, wait_s=wait_s)
            )
            return reply.assignment.task_id if reply.assignment else None

        waited = asyncio.create_task(ask("waited", 5))
        while not service.workers_waiting():
            await asyncio.sleep(0)
        service.take_leases([held("t1").lease])  # wakes "waited", which has not looked yet
        newcomer = asyncio.create_task(ask("newcomer", 0.2))
        try:
            return await waited, await newcomer
        finally:
            service.store.close()
            service.outbox.close()
            await service.server.close()

    assert asyncio.run(main()) == ("t1", None)
