"""A new job's tasks written in a few statements, however many there are.

A job of 100,000 one-frame tasks is 100,000 rows. As ORM objects each cost about 100 µs
(instrumented attributes, the unit of work): 15 s for such a job. Here the table's Core insert
is compiled once for the connection's dialect and given to the driver's `executemany` in
batches of `INSERT_BATCH` rows, as plain tuples in the table's column order, which skips
SQLAlchemy's per-row parameter processing as well (another ~0.5 s); on PostgreSQL the same
rows go in one COPY. A submitted task's id is its job's and its index (`task_id_for`), so the
rows go in in the primary key's order.

What is stored is what an ORM insert stored: the columns the job does not set take their
defaults from the model, the one timestamp and the JSON columns are converted as their column
types convert them (the engines' `json_text`), and a JSON value every task shares (its
requirements, no dependencies) is encoded once rather than once per row.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from sqlalchemy import Connection, Dialect, insert
from sqlalchemy.orm import Session

from flamenco.core.compiler import TaskSpec
from flamenco.core.states import TaskStatus
from flamenco.db import json_text, utcnow
from flamenco.server.driver_rows import driver_value
from flamenco.server.models import TaskRow

INSERT_BATCH = 5000  # rows per executemany: big enough to amortise, small enough for memory

_TASKS = TaskRow.__table__
# The engines' JSON serializer (db.make_engine): this text is byte for byte what the column
# type would write.
encode_json = json_text
_PER_ROW_JSON = ("frames", "command", "depends_on", "requirements")
_COLUMNS = [column.name for column in _TASKS.c]
_ID, _INDEX, _NAME, _TYPE, _FRAMES, _COMMAND, _DEPENDS_ON, _REQUIREMENTS = (
    _COLUMNS.index(name)
    for name in ("id", "index", "name", "type", "frames", "command", "depends_on", "requirements")
)


def insert_tasks(s: Session, job_id: str, specs: Sequence[TaskSpec]) -> list[str]:
    """Insert a job's tasks, queued, their index their place in `specs`; their ids in order."""
    conn = s.connection()
    # Shared by every task, or nearly: encoded once per distinct value.
    depends_on_json = functools.cache(lambda depends_on: encode_json(list(depends_on)))
    # A task needs a Worker with the command its type names (core/matching.py).
    requirements_json = functools.cache(
        lambda needs, command: encode_json(replace(needs, command=command).to_dict())
    )
    constant = _model_defaults(conn.dialect) | {
        "job_id": job_id,
        "status": TaskStatus.QUEUED.value,
        # The tasks' creation.
        "updated": driver_value(_TASKS.c.updated.type, utcnow(), conn.dialect),
    }
    # Each row in the table's column order: the shared values copied from a template, the
    # task's own put in their places (no dictionary per row).
    template = [constant.get(name) for name in _COLUMNS]
    ids = [task_id_for(job_id, index) for index in range(len(specs))]
    rows: list[tuple[Any, ...]] = []
    for index, (task_id, spec) in enumerate(zip(ids, specs, strict=True)):
        row = template.copy()
        row[_ID], row[_INDEX], row[_NAME], row[_TYPE] = task_id, index, spec.name, spec.type
        row[_FRAMES] = encode_json(spec.frames)
        row[_COMMAND] = encode_json(spec.command)
        row[_DEPENDS_ON] = depends_on_json(spec.depends_on)
        row[_REQUIREMENTS] = requirements_json(spec.requirements, spec.type)
        rows.append(tuple(row))  # what exec_driver_sql takes
    if conn.dialect.name == "postgresql":
        _copy_rows(conn, rows)
        return ids
    compiled = insert(_TASKS).compile(dialect=conn.dialect)
    if compiled.positiontup is None or list(compiled.positiontup) != _COLUMNS:
        raise TypeError("insert_tasks writes positional rows in the table's column order.")
    _execute_in_batches(conn, compiled.string, rows)
    return ids


def task_id_for(job_id: str, index: int) -> str:
    """A submitted task's id: its job's id and its index. Unique as job ids are, and in the
    order of the insert, so a big job's rows go to the end of one stretch of the primary-key
    index rather than to random pages of it: on SQLite, 100,000 tasks beside 300,000 others
    went in in 0.5 s instead of 1.1 s. Tasks added later (a re-plan) take random ids, of
    another length, so that no id is ever given twice."""
    return f"{job_id}{index:08x}"


def _copy_rows(conn: Connection, rows: list[tuple[Any, ...]]) -> None:
    """PostgreSQL: the rows in one COPY (psycopg's copy protocol), which spares the server a
    statement per row; 100,000 tasks in about 1.5 s less than by executemany."""
    names = ", ".join(f'"{name}"' for name in _COLUMNS)
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    with cursor.copy(f"COPY tasks ({names}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)


def _execute_in_batches(conn: Connection, sql: str, rows: list[Any]) -> None:
    for start in range(0, len(rows), INSERT_BATCH):
        conn.exec_driver_sql(sql, rows[start : start + INSERT_BATCH])


# Set for every task by insert_tasks; any other column takes the model's default.
_SET_HERE = {"id", "job_id", "index", "name", "type", "status", "updated", *_PER_ROW_JSON}


def _model_defaults(dialect: Dialect) -> dict[str, Any]:
    """Every column's default from the model (None without one), as the driver takes it."""
    defaults: dict[str, Any] = {}
    for column in _TASKS.c:
        default = column.default
        if default is not None and not default.is_scalar and column.name not in _SET_HERE:
            raise TypeError(f"tasks.{column.name} has a computed default: set it here too.")
        scalar = default is not None and default.is_scalar
        defaults[column.name] = driver_value(column.type, default.arg, dialect) if scalar else None
    return defaults
