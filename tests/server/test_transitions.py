"""The one door for status changes (flamenco.server.transitions), table-driven over every pair
of statuses against core/states.py, on a real SQLite database; and a look at the source that no
other module of flamenco.server writes a status."""

from __future__ import annotations

import ast
import itertools
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import event, select
from sqlalchemy.orm import sessionmaker

import flamenco.server
from flamenco.core.states import (
    JOB_TRANSITIONS,
    TASK_TRANSITIONS,
    InvalidTransition,
    JobStatus,
    TaskStatus,
)
from flamenco.db import Base, make_engine, make_sessions, sqlite_url, utcnow
from flamenco.server.models import JobRow, ManagerRow, TaskRow
from flamenco.server.transitions import (
    lease_tasks,
    refresh_job_status,
    release_task,
    report_task,
    set_job_status,
)

T, J = TaskStatus, JobStatus
EXPIRES = datetime(2030, 1, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def sessions(tmp_path_factory: pytest.TempPathFactory) -> Iterator[sessionmaker]:
    engine = make_engine(sqlite_url(tmp_path_factory.mktemp("door") / "server.sqlite"))
    Base.metadata.create_all(engine)
    factory = make_sessions(engine)
    with factory.begin() as s:
        s.add(ManagerRow(id=1, name="site", token_hash="h1"))
        s.add(ManagerRow(id=2, name="other site", token_hash="h2"))
    yield factory
    engine.dispose()


def _store(sessions: sessionmaker, job_status: JobStatus, task_statuses: list[TaskStatus]) -> str:
    """A job in `job_status` with one task per status, each held by Manager 1 on Worker w1."""
    job_id = secrets.token_hex(6)
    with sessions.begin() as s:
        s.add(
            JobRow(
                id=job_id,
                name="door",
                type="blender-render",
                status=job_status,
                priority=50,
                submitter="alice",
                settings={},
                files={},
                output_dir="/nowhere",
                frames_total=len(task_statuses),
            )
        )
        s.flush()
        for index, status in enumerate(task_statuses):
            s.add(
                TaskRow(
                    id=secrets.token_hex(8),
                    job_id=job_id,
                    index=index,
                    name=f"task {index}",
                    type="blender",
                    status=status,
                    frames=[index],
                    command={},
                    progress=0.5,
                    manager_id=1,
                    lease_expires=utcnow() + timedelta(minutes=5),
                    worker="w1",
                )
            )
    return job_id


@dataclass(frozen=True)
class TaskState:
    status: str
    manager_id: int | None
    lease_expires: datetime | None
    progress: float
    worker: str | None


def _task_states(sessions: sessionmaker, job_id: str) -> list[TaskState]:
    with sessions() as s:
        rows = s.scalars(select(TaskRow).where(TaskRow.job_id == job_id).order_by(TaskRow.index))
        return [
            TaskState(t.status, t.manager_id, t.lease_expires, t.progress, t.worker) for t in rows
        ]


def _allowed(table: dict, old: object, new: object) -> bool:
    return old == new or new in table[old]


# Each task door: the status it moves to, and what else a task entering that status holds.
TaskDoor = Callable[[TaskRow, TaskStatus], None]


def _expected(door: str, new: TaskStatus, before: TaskState) -> TaskState:
    if door == "lease":
        return TaskState(new, 2, EXPIRES, before.progress, before.worker)
    if door == "release":
        progress = before.progress if new == T.COMPLETED else 0.0
        return TaskState(new, None, None, progress, before.worker)
    if door == "release, forgetting the Worker":
        return TaskState(new, None, None, before.progress if new == T.COMPLETED else 0.0, None)
    assert door == "report"
    if new == T.COMPLETED:
        return TaskState(new, before.manager_id, None, 1.0, before.worker)
    if new in (T.SOFT_FAILED, T.FAILED, T.QUEUED):
        return TaskState(new, None, None, 0.0, before.worker)
    return TaskState(new, before.manager_id, before.lease_expires, before.progress, before.worker)


TASK_DOORS: dict[str, TaskDoor] = {
    "report": report_task,
    "release": release_task,
    "release, forgetting the Worker": lambda task, new: release_task(task, new, True),
}
TASK_CASES = [
    (door, old, new)
    for door in TASK_DOORS
    for old, new in itertools.product(TaskStatus, TaskStatus)
]


@pytest.mark.parametrize(("door", "old", "new"), TASK_CASES)
def test_task_door_writes_exactly_what_the_table_allows(
    sessions: sessionmaker, door: str, old: TaskStatus, new: TaskStatus
) -> None:
    job_id = _store(sessions, J.ACTIVE, [old])
    (before,) = _task_states(sessions, job_id)
    allowed = _allowed(TASK_TRANSITIONS, old, new)
    with sessions.begin() as s:
        task = s.scalars(select(TaskRow).where(TaskRow.job_id == job_id)).one()
        if allowed:
            TASK_DOORS[door](task, new)
        else:
            with pytest.raises(InvalidTransition) as refused:
                TASK_DOORS[door](task, new)
            assert str(refused.value) == f"A task cannot go from {old} to {new}."
            # Nothing was written, not even in the session: the transaction commits as it was.
            assert (
                TaskState(
                    task.status, task.manager_id, task.lease_expires, task.progress, task.worker
                )
                == before
            )
    (after,) = _task_states(sessions, job_id)
    assert after == (_expected(door, new, before) if allowed else before)


@pytest.mark.parametrize("old", list(TaskStatus))
def test_the_bulk_lease_door_writes_exactly_what_the_table_allows(
    sessions: sessionmaker, old: TaskStatus
) -> None:
    """lease_tasks, pair by pair, against the same table and with the same columns as the
    one-task door; a refused pair in a batch leaves every task of it as it was."""
    job_id = _store(sessions, J.ACTIVE, [old, T.QUEUED])
    before = _task_states(sessions, job_id)
    with sessions() as s:
        ids = list(
            s.scalars(select(TaskRow.id).where(TaskRow.job_id == job_id).order_by(TaskRow.index))
        )
    allowed = _allowed(TASK_TRANSITIONS, old, T.LEASED)
    with sessions.begin() as s:
        pairs = [(ids[0], old), (ids[1], T.QUEUED)]
        if allowed:
            assert lease_tasks(s, pairs, 2, EXPIRES) == set(ids)
        else:
            with pytest.raises(
                InvalidTransition, match=rf"^A task cannot go from {old} to leased\.$"
            ):
                lease_tasks(s, pairs, 2, EXPIRES)
    after = _task_states(sessions, job_id)
    assert after == (
        [_expected("lease", T.LEASED, state) for state in before] if allowed else before
    )


def test_the_bulk_lease_door_leaves_a_task_whose_status_moved_since_it_was_read(
    sessions: sessionmaker,
) -> None:
    """A task read queued that is active by the time it is leased keeps its status and
    holder, and is missing from the ids returned; the session's copy shows what is stored."""
    job_id = _store(sessions, J.ACTIVE, [T.ACTIVE, T.QUEUED])
    before = _task_states(sessions, job_id)
    with sessions.begin() as s:
        moved, queued = s.scalars(
            select(TaskRow).where(TaskRow.job_id == job_id).order_by(TaskRow.index)
        ).all()
        pairs = [(moved.id, T.QUEUED), (queued.id, T.QUEUED)]  # the first was read queued
        assert lease_tasks(s, pairs, 2, EXPIRES) == {queued.id}
        assert (queued.status, queued.manager_id, queued.lease_expires) == (T.LEASED, 2, EXPIRES)
    assert _task_states(sessions, job_id) == [before[0], _expected("lease", T.LEASED, before[1])]


def test_the_bulk_lease_door_finds_its_tasks_by_id_not_by_status(sessions: sessionmaker) -> None:
    """SQLite's plan for the bulk door's UPDATE, with the statement and parameters it really
    sends for 50 tasks: by the primary key, not through a status index (which reads every
    queued task of the farm: 60 times slower at 60,000)."""
    job_id = _store(sessions, J.ACTIVE, [T.QUEUED] * 50)
    sent: list[tuple[str, object]] = []

    def remember(conn: object, cursor: object, statement: str, params: object, *_: object) -> None:
        if statement.startswith("UPDATE tasks"):
            sent.append((statement, params))

    engine = sessions.kw["bind"]
    event.listen(engine, "before_cursor_execute", remember)
    try:
        with sessions.begin() as s:
            ids = s.scalars(select(TaskRow.id).where(TaskRow.job_id == job_id)).all()
            assert lease_tasks(s, [(i, T.QUEUED) for i in ids], 2, EXPIRES) == set(ids)
    finally:
        event.remove(engine, "before_cursor_execute", remember)
    ((statement, params),) = sent
    with engine.connect() as conn:
        plan = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", params).all()
    assert [row[-1] for row in plan] == ["SEARCH tasks USING INDEX sqlite_autoindex_tasks_1 (id=?)"]


@pytest.mark.parametrize(("old", "new"), list(itertools.product(JobStatus, JobStatus)))
def test_job_door_writes_exactly_what_the_table_allows(
    sessions: sessionmaker, old: JobStatus, new: JobStatus
) -> None:
    job_id = _store(sessions, old, [])
    allowed = _allowed(JOB_TRANSITIONS, old, new)
    with sessions.begin() as s:
        job = s.get(JobRow, job_id)
        assert job is not None
        if allowed:
            set_job_status(job, new)
        else:
            with pytest.raises(
                InvalidTransition, match=rf"^A job cannot go from {old} to {new}\.$"
            ):
                set_job_status(job, new)
            assert job.status == old
    with sessions() as s:
        assert s.get(JobRow, job_id).status == (new if allowed else old)  # type: ignore[union-attr]


def test_a_failing_job_takes_its_unfinished_tasks_away_canceled(sessions: sessionmaker) -> None:
    statuses = [T.FAILED, T.COMPLETED, T.QUEUED, T.LEASED, T.ACTIVE, T.SOFT_FAILED, T.PAUSED]
    job_id = _store(sessions, J.ACTIVE, statuses)
    with sessions.begin() as s:
        refresh_job_status(s, job_id)
    with sessions() as s:
        assert s.get(JobRow, job_id).status == J.FAILED  # type: ignore[union-attr]
    after = _task_states(sessions, job_id)
    assert [t.status for t in after] == [T.FAILED, T.COMPLETED, *[T.CANCELED] * 4, T.PAUSED]
    assert [t.manager_id for t in after[2:6]] == [None] * 4


@pytest.mark.parametrize(
    ("job_status", "tasks", "expected"),
    [
        (J.QUEUED, [T.LEASED, T.QUEUED], J.ACTIVE),
        (J.ACTIVE, [T.COMPLETED, T.COMPLETED], J.COMPLETED),
        (J.PAUSE_REQUESTED, [T.PAUSED, T.COMPLETED], J.PAUSED),
        (J.CANCEL_REQUESTED, [T.CANCELED, T.ACTIVE], J.CANCEL_REQUESTED),
        (J.PAUSED, [T.COMPLETED], J.PAUSED),  # settled: only an action moves it
    ],
)
def test_refresh_moves_the_job_to_what_its_tasks_imply(
    sessions: sessionmaker, job_status: JobStatus, tasks: list[TaskStatus], expected: JobStatus
) -> None:
    job_id = _store(sessions, job_status, tasks)
    with sessions.begin() as s:
        refresh_job_status(s, job_id)
    with sessions() as s:
        assert s.get(JobRow, job_id).status == expected  # type: ignore[union-attr]
    assert [t.status for t in _task_states(sessions, job_id)] == tasks


# ---- nobody else writes a status -----------------------------------------------------------

SERVER = Path(flamenco.server.__file__).parent
DOOR = SERVER / "transitions.py"


def status_writes(source: str) -> list[int]:
    """Lines of `source` that write a status: `x.status = …` (alone or among several targets),
    `setattr(x, "status", …)`, or an SQL `update(…).values(status=…)`/`{"status": …}` row."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Assign | ast.AugAssign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                elements = target.elts if isinstance(target, ast.Tuple | ast.List) else [target]
                if any(isinstance(e, ast.Attribute) and e.attr == "status" for e in elements):
                    lines.append(node.lineno)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute | ast.Name):
            name = node.func.attr if isinstance(node.func, ast.Attribute) else node.func.id
            if name == "setattr" and any(
                isinstance(a, ast.Constant) and a.value == "status" for a in node.args
            ):
                lines.append(node.lineno)
            if name == "values" and any(k.arg == "status" for k in node.keywords):
                lines.append(node.lineno)
            if name == "execute":
                for arg in ast.walk(ast.Tuple(elts=node.args)):
                    keys = arg.keys if isinstance(arg, ast.Dict) else []
                    if any(isinstance(k, ast.Constant) and k.value == "status" for k in keys):
                        lines.append(node.lineno)
    return sorted(set(lines))


@pytest.mark.parametrize(
    ("source", "lines"),
    [
        ("task.status = 'queued'", [1]),
        ("x = 1\ntask.status, task.worker = new, None", [2]),
        ("job.status: str = new", [1]),
        ("setattr(task, 'status', new)", [1]),
        ("s.execute(update(TaskRow).values(status='queued'))", [1]),
        ("s.execute(update(TaskRow), [{'id': i, 'status': 'queued'}])", [1]),
        ("if task.status == new:\n    pass", []),
        ("row = TaskRow(status='queued')", []),  # a new row is no change of status
        ("return {'status': state}", []),
    ],
)
def test_status_writes_finds_every_way_of_writing(source: str, lines: list[int]) -> None:
    assert status_writes(source.replace("return ", "_ = ")) == lines


def test_only_the_door_writes_a_status() -> None:
    modules = sorted(SERVER.rglob("*.py"))
    assert DOOR in modules and len(modules) > 5
    writes = {
        str(path.relative_to(SERVER)): found
        for path in modules
        if path != DOOR and (found := status_writes(path.read_text()))
    }
    assert writes == {}, f"status written outside server/transitions.py: {writes}"
    assert status_writes(DOOR.read_text()), "the door itself writes statuses"
