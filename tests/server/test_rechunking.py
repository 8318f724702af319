"""`--chunk auto` on the Server: completions re-plan only the trailing queued tasks, every
frame stays in exactly one task, in order. Services called directly, on SQLite and PostgreSQL;
the "render" is the time between a task's active and completed reports (real time passes)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from serverkit import BLEND, ONE_CPU_WORKER, add_manager, lease_sync, make_services, task_update

from flamenco import wire
from flamenco.core.states import TaskStatus
from flamenco.errors import Unprocessable
from flamenco.server.leases import LeaseService
from flamenco.server.models import ManagerRow
from flamenco.server.services import ServerServices


@pytest.fixture(params=["sqlite", "postgres"])
def svc(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ServerServices]:
    yield from make_services(request, tmp_path)


def add_auto_job(svc: ServerServices, frames: str, **settings: object) -> wire.Job:
    sub = wire.JobSubmission(
        name="auto",
        priority=50,
        files={"s.blend": svc.blobs.put_file(BLEND)},
        settings={"blend": "s.blend", "frames": frames, "chunk_size": "auto", **settings},
    )
    return svc.jobs.submit(sub, submitter="alice")


def render(svc: ServerServices, manager: ManagerRow, task_id: str, seconds: float) -> None:
    """A Worker renders the task for `seconds` (its run: active, then completed)."""
    svc.leases.apply_updates(manager, [task_update(task_id, TaskStatus.ACTIVE, worker="w1")])
    time.sleep(seconds)  # the render itself: the time being measured
    svc.leases.apply_updates(manager, [task_update(task_id, TaskStatus.COMPLETED, worker="w1")])


def frames_of(tasks: list[wire.Task]) -> list[int]:
    return [frame for task in tasks for frame in task.frames]


def test_completions_merge_then_split_only_queued_tasks(svc: ServerServices) -> None:
    manager = add_manager(svc, "site")
    job = add_auto_job(svc, "1-40", task_seconds=1.0)
    planned = svc.jobs.tasks(job.id)
    assert [t.frames for t in planned] == [[f] for f in range(1, 41)]  # nothing known yet

    first, second = lease_sync(svc, manager, want=2).leases
    render(svc, manager, first.task_id, 0.1)  # 0.1 s a frame: merge towards 1 s
    merged = svc.jobs.tasks(job.id)
    assert len(merged) < len(planned)
    held = {t.id: t for t in merged}[second.task_id]
    assert (held.status, held.frames) == (TaskStatus.LEASED, [2])  # a leased task is untouched
    queued = [t for t in merged if t.status == TaskStatus.QUEUED]
    assert len(queued[0].frames) > 1  # the last ones shrink for the end (core tables)
    assert all(
        t.name == f"render {t.frames[0]}-{t.frames[-1]}" for t in queued if len(t.frames) > 1
    )
    assert frames_of(merged) == list(range(1, 41))  # every frame once, in order

    render(svc, manager, second.task_id, 1.0)  # frame 2 took 1 s: the cost rises, split
    split = svc.jobs.tasks(job.id)
    queued_after = [t for t in split if t.status == TaskStatus.QUEUED]
    assert len(queued_after) > len(queued)
    assert max(len(t.frames) for t in queued_after) < max(len(t.frames) for t in queued)
    assert frames_of(split) == list(range(1, 41))
    assert [t.index for t in split] == sorted({t.index for t in split})  # distinct, in order

    # The re-planned tasks lease and render like any other, to a completed job.
    while lease := lease_sync(svc, manager, want=4).leases:
        for task in lease:
            svc.leases.apply_updates(
                manager,
                [
                    task_update(task.task_id, TaskStatus.ACTIVE, worker="w1"),
                    task_update(task.task_id, TaskStatus.COMPLETED, worker="w1"),
                ],
            )
    final = svc.jobs.tasks(job.id)
    assert {t.status for t in final} == {TaskStatus.COMPLETED}
    assert frames_of(final) == list(range(1, 41))
    assert svc.jobs.get(job.id).status == "completed"


def test_a_requeued_task_in_the_middle_keeps_its_frames(svc: ServerServices) -> None:
    """Only the queued tasks after every other task are re-planned."""
    manager = add_manager(svc, "site")
    job = add_auto_job(svc, "1-20", task_seconds=5.0)
    first, second, third = lease_sync(svc, manager, want=3).leases
    svc.leases.apply_updates(manager, [task_update(second.task_id, TaskStatus.QUEUED, worker="w1")])
    render(svc, manager, first.task_id, 0.05)
    tasks = svc.jobs.tasks(job.id)
    by_id = {t.id: t for t in tasks}
    assert (by_id[second.task_id].status, by_id[second.task_id].frames) == ("queued", [2])
    assert (by_id[third.task_id].status, by_id[third.task_id].frames) == ("leased", [3])
    assert len(tasks) < 20  # the tail after frame 3 was merged
    assert frames_of(tasks) == list(range(1, 21))


@pytest.mark.parametrize(
    ("settings", "sentence"),
    [
        ({"task_seconds": 0}, "Setting 'task_seconds' must be a number of seconds above 0, got 0."),
        (
            {"task_seconds": -5},
            "Setting 'task_seconds' must be a number of seconds above 0, got -5.",
        ),
        (
            {"task_seconds": "60"},
            "Setting 'task_seconds' must be a number of seconds above 0, got '60'.",
        ),
        (
            {"preview_video": True},
            "Chunk size 'auto' cannot be combined with a preview video: it re-plans the render "
            "tasks that these depend on; give a fixed chunk size.",
        ),
    ],
)
def test_bad_auto_settings_create_nothing(
    svc: ServerServices, settings: dict[str, object], sentence: str
) -> None:
    with pytest.raises(Unprocessable) as caught:
        add_auto_job(svc, "1-10", **settings)
    assert str(caught.value) == sentence
    assert svc.jobs.list() == []


def test_a_lease_racing_a_replan_hands_out_the_frames_its_task_holds(
    svc: ServerServices, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A lease that has read its candidates when a completion re-plans the queue: the frames
    it hands out are the ones its task holds after both (SQLite: the plan lock; PostgreSQL:
    the rows the lease locked are not re-planned)."""
    manager = add_manager(svc, "site")
    job = add_auto_job(svc, "1-40", task_seconds=5.0)
    (first,) = lease_sync(svc, manager, want=1).leases
    svc.leases.apply_updates(manager, [task_update(first.task_id, TaskStatus.ACTIVE, worker="w1")])
    read, go = threading.Event(), threading.Event()
    original = LeaseService._may_lease

    def pausing(self: LeaseService, s: Any, task: Any, allowed: Any) -> bool:
        read.set()  # the candidates are read; the lease has not written yet
        go.wait(30)
        return original(self, s, task, allowed)

    monkeypatch.setattr(LeaseService, "_may_lease", pausing)
    replies: list[wire.ManagerSyncReply] = []
    # A sync that was held until there was work (sync_waiting) stores nothing before it
    # leases: its reads come first, as in a busy farm.
    request = wire.ManagerSync(want=1, held=[first.task_id], workers=ONE_CPU_WORKER)
    lease = threading.Thread(
        target=lambda: replies.append(svc.leases._sync(manager.id, request, False).reply)
    )
    lease.start()
    assert read.wait(30)
    done = task_update(first.task_id, TaskStatus.COMPLETED, worker="w1")
    completion = threading.Thread(target=svc.leases.apply_updates, args=(manager, [done]))
    completion.start()
    completion.join(timeout=1.0)  # on SQLite it waits for the lease; elsewhere it may finish
    go.set()
    lease.join(30)
    completion.join(30)
    assert not lease.is_alive() and not completion.is_alive()
    (given,) = replies[0].leases
    tasks = svc.jobs.tasks(job.id)
    assert {t.id: t.frames for t in tasks}[given.task_id] == given.frames
    assert len(tasks) < 40  # the completion did re-plan
    assert frames_of(tasks) == list(range(1, 41))
