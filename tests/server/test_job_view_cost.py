"""What a job's answer costs does not grow with its tasks or frames, on a real SQLite file and
a real PostgreSQL: the same statements for 20 tasks as for 6,000, none a full scan of a
job's tasks or frames (SQLite's query plans), no task read as an object; the extensions of
its frames, which the Dashboard and `jobs show` print, come without its frames' list; and the
runs of its latest tasks (the Dashboard's timeline) without reading all of them."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from serverkit import BLEND, add_job, add_manager, alice, lease_sync, make_services, task_update
from sqlalchemy import event, insert

from flamenco import wire
from flamenco.core.actions import JobAction
from flamenco.core.states import JobStatus, TaskStatus
from flamenco.errors import Unprocessable
from flamenco.server.models import OutputRow, TaskRow
from flamenco.server.services import ServerServices


@pytest.fixture(params=["sqlite", "postgres"])
def svc(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ServerServices]:
    yield from make_services(request, tmp_path)


def add_frames(svc: ServerServices, job_id: str, names: list[str]) -> None:
    with svc.jobs.sessions.begin() as s:
        s.execute(
            insert(OutputRow),
            [
                {
                    "job_id": job_id,
                    "task_id": "t",
                    "frame": frame,
                    "sha256": "0" * 64,
                    "size": 1,
                    "filename": name,
                }
                for frame, name in enumerate(names, start=1)
            ],
        )


def started_job(svc: ServerServices, tasks: int, priority: int) -> wire.Job:
    """A job of `tasks` one-frame tasks: 3 completed with a frame each, 2 rendering (the
    priority above earlier jobs', so that its tasks are the ones leased)."""
    job = add_job(svc, f"1-{tasks}", priority=priority)
    manager = add_manager(svc, f"site-{tasks}")
    leases = lease_sync(svc, manager, want=5).leases
    updates = [task_update(lease.task_id, TaskStatus.COMPLETED) for lease in leases[:3]]
    updates += [task_update(lease.task_id, TaskStatus.ACTIVE, progress=0.5) for lease in leases[3:]]
    svc.leases.apply_updates(manager, updates)
    add_frames(svc, job.id, [f"f_{n}.png" for n in (1, 2, 3)])
    return job


def statements_of_get(svc: ServerServices, job_id: str) -> tuple[wire.Job, list[Any]]:
    seen: list[Any] = []
    loaded: list[Any] = []

    def statement(_conn: Any, _cursor: Any, sql: str, params: Any, *_: Any) -> None:
        seen.append((sql, params))

    def task_object(*args: Any) -> None:
        loaded.append(args)

    event.listen(svc.engine, "before_cursor_execute", statement)
    event.listen(TaskRow, "load", task_object)
    try:
        job = svc.jobs.get(job_id)
    finally:
        event.remove(svc.engine, "before_cursor_execute", statement)
        event.remove(TaskRow, "load", task_object)
    assert loaded == []
    return job, seen


def test_a_jobs_answer_costs_the_same_for_20_tasks_as_for_6000(svc: ServerServices) -> None:
    small, small_sql = statements_of_get(svc, started_job(svc, 20, priority=50).id)
    big, big_sql = statements_of_get(svc, started_job(svc, 6000, priority=60).id)
    assert (small.tasks_total, big.tasks_total) == (20, 6000)
    assert (big.tasks_completed, big.frames_done, big.frame_extensions) == (3, 3, [".png"])
    assert big.progress == round((3 + 2 * 0.5) / 6000, 4)
    assert small.progress == round((3 + 2 * 0.5) / 20, 4)
    assert big.waiting_reason is None and small.waiting_reason is None
    assert [sql for sql, _ in big_sql] == [sql for sql, _ in small_sql]
    if svc.engine.dialect.name != "sqlite":
        return
    raw = svc.engine.raw_connection()
    try:
        for sql, params in big_sql:
            lines = [row[3] for row in raw.execute(f"EXPLAIN QUERY PLAN {sql}", params)]
            plan = " | ".join(lines)
            assert "SCAN tasks" not in plan and "SCAN outputs" not in plan, (sql, plan)
            assert "TEMP B-TREE FOR ORDER BY" not in plan, (sql, plan)
            # Every task of the job, row by row, unless the index alone answers.
            for line in lines:
                if line.startswith("SEARCH tasks") and line.endswith("(job_id=?)"):
                    assert "COVERING INDEX" in line, (sql, plan)
    finally:
        raw.close()


def test_frame_extensions_without_the_frames_list(svc: ServerServices) -> None:
    job = add_job(svc, "1-5")
    assert svc.jobs.get(job.id).frame_extensions == []
    # Requeued after the scene's output changed: both kinds are the job's; the case of an
    # extension is not a kind of its own.
    add_frames(svc, job.id, ["a_1.png", "a_2.EXR", "a_3.exr", "a_4.png", "a_5.exr"])
    answer, statements = statements_of_get(svc, job.id)
    assert answer.frame_extensions == [".exr", ".png"]
    outputs = [sql for sql, _ in statements if "FROM outputs" in sql and "filename" in sql]
    # One per suffix as written, and one that finds none left: never one per frame.
    assert len(outputs) <= 4
    # Lists do not carry them (every job's frames would be looked at).
    assert [j.frame_extensions for j in svc.jobs.list()] == [None]


def test_the_latest_runs_of_a_big_job_are_read_without_all_of_them(svc: ServerServices) -> None:
    job = add_job(svc, "1-40", priority=70)
    manager = add_manager(svc, "site")
    leases = lease_sync(svc, manager, want=14).leases
    assert [lease.frames for lease in leases] == [[n] for n in range(1, 15)]
    done = [task_update(lease.task_id, TaskStatus.ACTIVE, worker="w1") for lease in leases]
    done += [task_update(lease.task_id, TaskStatus.COMPLETED, worker="w1") for lease in leases]
    svc.leases.apply_updates(manager, done[:14] + done[14:26])  # the last two keep running
    everything = svc.jobs.runs(job.id)
    assert len(everything.runs) == 14

    seen: list[str] = []
    hook = lambda _c, _k, sql, *_: seen.append(sql)  # noqa: E731
    event.listen(svc.engine, "before_cursor_execute", hook)
    try:
        latest = svc.jobs.runs(job.id, last=5)
    finally:
        event.remove(svc.engine, "before_cursor_execute", hook)
    # Tasks 10-14 by the job's order; the two still running have open runs.
    assert [run.task_name for run in latest.runs] == [f"render {n}" for n in range(10, 15)]
    assert [run.end is None for run in latest.runs] == [False] * 3 + [True] * 2
    assert latest.started == everything.started is not None
    # One read per status that is not queued, the runs, the start; whatever the job's size.
    assert len(seen) <= len(TaskStatus) + 3
    assert svc.jobs.runs(job.id, last=100).runs == everything.runs
    with pytest.raises(Unprocessable, match="'last' must be from 1 to 10000 tasks, not 0"):
        svc.jobs.runs(job.id, last=0)


def statements_of_list(svc: ServerServices) -> tuple[list[wire.Job], list[str]]:
    seen: list[str] = []
    hook = lambda _c, _k, sql, *_: seen.append(sql)  # noqa: E731
    event.listen(svc.engine, "before_cursor_execute", hook)
    try:
        jobs = svc.jobs.list()
    finally:
        event.remove(svc.engine, "before_cursor_execute", hook)
    return jobs, seen


def shapes(statements: list[str]) -> list[str]:
    """Statements with each list of bound values as one (PostgreSQL's are `%(name)s::TYPE`)."""
    return [re.sub(r"IN \((?:[^()]|\([^()]*\))*\)", "IN (…)", sql) for sql in statements]


def submit_after(svc: ServerServices, frames: str, after: list[str]) -> wire.Job:
    sub = wire.JobSubmission(
        name=f"after {frames}",
        files={"s.blend": svc.blobs.put_file(BLEND)},
        settings={"blend": "s.blend", "frames": frames, "chunk_size": 1},
        after=after,
    )
    return svc.jobs.submit(sub, submitter="alice")


def test_a_job_list_reads_its_jobs_together_and_says_of_each_what_its_answer_says(
    svc: ServerServices,
) -> None:
    """A farm that kept months of jobs lists thousands: the statements of a list do not grow
    with its finished jobs, and each job in it is what the job's own answer says."""
    rendering = started_job(svc, 20, priority=60)
    waiting = submit_after(svc, "1-3", after=[rendering.id])
    failing = add_job(svc, "1", priority=90)
    site = add_manager(svc, "other-site")
    for _ in range(2):  # max_task_failures=2 (serverkit): the job fails with its error
        (lease,) = lease_sync(svc, site, want=1).leases
        assert lease.job_id == failing.id
        svc.leases.apply_updates(
            site, [task_update(lease.task_id, TaskStatus.FAILED, worker="w7", error="boom")]
        )
    canceled = [add_job(svc, "1-4", priority=10) for _ in range(2)]
    for job in canceled:
        svc.jobs.act(job.id, JobAction.CANCEL, alice(svc))

    few, few_sql = statements_of_list(svc)
    for _ in range(40):
        svc.jobs.act(add_job(svc, "1-4", priority=10).id, JobAction.CANCEL, alice(svc))
    many, many_sql = statements_of_list(svc)

    assert len(few) == 5 and len(many) == 45
    # The same statements for 5 jobs as for 45, their lists of job ids aside.
    assert shapes(few_sql) == shapes(many_sql)
    by_id = {job.id: job for job in many}
    assert by_id[rendering.id].progress == round((3 + 2 * 0.5) / 20, 4)
    assert (by_id[rendering.id].tasks_completed, by_id[rendering.id].frames_done) == (3, 3)
    assert by_id[waiting.id].after == [rendering.id]
    assert (
        by_id[waiting.id].waiting_reason == f"Waits for job {rendering.id} (active, 15 %)."
    )  # tasks completed
    assert by_id[failing.id].status == JobStatus.FAILED
    assert by_id[failing.id].last_error is not None and "boom" in by_id[failing.id].last_error
    assert {job.status for job in many[:40]} == {JobStatus.CANCELED}  # newest first
    for job in few:
        alone = svc.jobs.get(job.id).model_copy(update={"frame_extensions": None})
        assert by_id[job.id] == alone, job.id
