"""A job's tasks written in batches (server/task_inserts.py), on a real SQLite file and a real
PostgreSQL: the rows are those the ORM wrote before, byte for byte, and a submission's
statements grow with its batches, never with its tasks."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from serverkit import BLEND, make_services
from sqlalchemy import JSON, Engine, Text, cast, event, select

from flamenco import wire
from flamenco.core.compiler import TaskSpec
from flamenco.core.matching import Requirements
from flamenco.core.states import TaskStatus
from flamenco.db import utcnow
from flamenco.server.models import JobRow, TaskRow
from flamenco.server.services import ServerServices
from flamenco.server.task_inserts import INSERT_BATCH, insert_tasks


@pytest.fixture(params=["sqlite", "postgres"])
def svc(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ServerServices]:
    yield from make_services(request, tmp_path)


def submission(svc: ServerServices, frames: str, **settings: Any) -> wire.JobSubmission:
    sha = svc.blobs.put_file(BLEND)
    return wire.JobSubmission(
        name=f"job {frames}",
        files={"s.blend": sha},
        settings={"blend": "s.blend", "frames": frames, "chunk_size": 1} | settings,
    )


SPECS = [
    TaskSpec("render 1-2", "blender", (1, 2), {"blend": "s.blend", "frames": [1, 2], "é": "ü"}),
    TaskSpec(
        "render 3",
        "blender",
        (3,),
        {"blend": "s.blend", "frames": [3], "nested": {"a": [1.5, None, True]}},
        requirements=Requirements("gpu-farm", "4.2", "OPTIX"),
    ),
    TaskSpec("preview", "ffmpeg", (1, 2, 3), {"fps": 24}, depends_on=(0, 1)),
]


def add_job_row(svc: ServerServices, job_id: str) -> None:
    with svc.jobs.sessions.begin() as s:
        s.add(
            JobRow(
                id=job_id,
                name=job_id,
                type="blender-render",
                status="queued",
                priority=50,
                submitter="alice",
                settings={},
                files={},
                output_dir="/nowhere",
                frames_total=3,
            )
        )


def stored_text(svc: ServerServices, job_id: str) -> list[tuple[Any, ...]]:
    """Every column of the job's tasks as the database holds it (JSON as its text), but the
    id, the job and the timestamp, which differ between two jobs."""
    skip = {"id", "job_id", "updated"}
    columns = [
        cast(c, Text) if isinstance(c.type, JSON) else c
        for c in TaskRow.__table__.c
        if c.name not in skip
    ]
    with svc.jobs.sessions() as s:
        query = select(*columns).where(TaskRow.job_id == job_id).order_by(TaskRow.index)
        return [tuple(row) for row in s.execute(query)]


def test_the_rows_are_those_the_orm_wrote(svc: ServerServices) -> None:
    add_job_row(svc, "orm")
    add_job_row(svc, "batched")
    with svc.jobs.sessions.begin() as s:  # how submit wrote them before
        s.add_all(
            TaskRow(
                id=f"orm-{index}",
                job_id="orm",
                index=index,
                name=spec.name,
                type=spec.type,
                status=TaskStatus.QUEUED,
                frames=list(spec.frames),
                command=spec.command,
                depends_on=list(spec.depends_on),
                # The command its type names is one of its requirements (core/matching.py).
                requirements=replace(spec.requirements, command=spec.type).to_dict(),
            )
            for index, spec in enumerate(SPECS)
        )
    before = utcnow()
    with svc.jobs.sessions.begin() as s:
        ids = insert_tasks(s, "batched", SPECS)
    # Its job's id and its index: unique as job ids are, and in the order of the insert.
    assert ids == ["batched00000000", "batched00000001", "batched00000002"]

    assert stored_text(svc, "batched") == stored_text(svc, "orm")
    with svc.jobs.sessions() as s:
        tasks = s.scalars(select(TaskRow).where(TaskRow.job_id == "batched")).all()
        by_index = {t.index: t for t in tasks}
    assert [by_index[i].id for i in range(3)] == ids
    assert by_index[2].depends_on == [0, 1]
    assert by_index[1].requirements == {
        "tag": "gpu-farm",
        "min_blender": "4.2",
        "device": "OPTIX",
        "command": "blender",
    }
    assert by_index[1].command["nested"] == {"a": [1.5, None, True]}
    assert by_index[0].command["é"] == "ü"
    for task in tasks:  # one creation time, timezone-aware, in UTC
        assert task.updated == tasks[0].updated
        assert before - timedelta(seconds=1) <= task.updated <= utcnow()
        assert task.progress == 0.0 and task.failure_count == 0 and task.manager_id is None


def test_a_submitted_job_has_its_tasks_frames_and_dependencies(svc: ServerServices) -> None:
    job = svc.jobs.submit(submission(svc, "1-5", chunk_size=2, preview_video=True), "alice")
    tasks = svc.jobs.tasks(job.id)
    assert [t.frames for t in tasks] == [[1, 2], [3, 4], [5], [1, 2, 3, 4, 5]]
    assert [t.index for t in tasks] == [0, 1, 2, 3]
    assert {t.status for t in tasks} == {TaskStatus.QUEUED}
    assert job.tasks_total == 4 and job.frames_total == 5 and job.progress == 0.0
    with svc.jobs.sessions() as s:
        rows = s.execute(
            select(TaskRow.index, TaskRow.depends_on, TaskRow.requirements)
            .where(TaskRow.job_id == job.id)
            .order_by(TaskRow.index)
        ).all()
    # The preview video waits for every render task.
    assert [row.depends_on for row in rows] == [[], [], [], [0, 1, 2]]
    assert rows[0].requirements == {
        "tag": None,
        "min_blender": None,
        "device": "CPU",
        "command": "blender-render",
    }


@contextmanager
def counted(engine: Engine) -> Iterator[dict[str, int]]:
    """Statements sent to the database, and TaskRow objects made or loaded, meanwhile."""
    seen = {"statements": 0, "task_objects": 0}

    def statement(*_: Any) -> None:
        seen["statements"] += 1

    def task_object(*_: Any) -> None:
        seen["task_objects"] += 1

    hooks = [
        (engine, "before_cursor_execute", statement),
        (TaskRow, "init", task_object),
        (TaskRow, "load", task_object),
    ]
    for target, name, hook in hooks:
        event.listen(target, name, hook)
    try:
        yield seen
    finally:
        for target, name, hook in hooks:
            event.remove(target, name, hook)


def test_statements_grow_with_batches_not_tasks(svc: ServerServices) -> None:
    small, big = 10, INSERT_BATCH * 2 + 1
    with counted(svc.engine) as few:
        svc.jobs.submit(submission(svc, f"1-{small}"), "alice")
    with counted(svc.engine) as many:
        job = svc.jobs.submit(submission(svc, f"1-{big}"), "alice")
    assert job.tasks_total == big
    extra_batches = math.ceil(big / INSERT_BATCH) - math.ceil(small / INSERT_BATCH)
    if svc.engine.dialect.name == "postgresql":  # one COPY, on the driver's own cursor
        extra_batches = 0
    assert many["statements"] == few["statements"] + extra_batches
    # No task became an ORM object on the way in or out (100 µs each: 15 s for 100,000).
    assert few["task_objects"] == many["task_objects"] == 0
