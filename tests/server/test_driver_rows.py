"""server/driver_rows.py: rows given to the driver store what SQLAlchemy's own executemany
stores, on SQLite and PostgreSQL, and a column left to a default is refused, not left empty."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, insert, select, text

from flamenco.db import Base, make_engine
from flamenco.server.driver_rows import DriverRows
from flamenco.server.models import AppliedUpdate

KEYS = ("update_id", "task_id", "outcome", "status", "worker", "manager_id", "received")
WHEN = datetime(2026, 3, 1, 12, 30, 15, 250_000, tzinfo=UTC)


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    Base.metadata.create_all(engine)
    yield engine
    engine.dispose()


def rows(prefix: str) -> list[dict[str, object]]:
    return [
        {
            "update_id": f"{prefix}{n}",
            "task_id": f"task{n}",
            "outcome": "applied",
            "status": None if n == 2 else "completed",
            "worker": "w1",
            "manager_id": n,
            "received": WHEN + timedelta(hours=n),  # one timestamp not in UTC
        }
        for n in range(3)
    ]


def stored(engine: Engine, prefix: str) -> list[tuple[object, ...]]:
    """The rows as the database holds them (SQLite: the timestamp's text)."""
    with engine.connect() as conn:
        found = conn.execute(
            text(
                "SELECT task_id, outcome, status, worker, manager_id, received"
                " FROM applied_updates WHERE update_id LIKE :prefix ORDER BY update_id"
            ),
            {"prefix": f"{prefix}%"},
        )
        return [tuple(row) for row in found]


def test_rows_through_the_driver_store_what_sqlalchemy_stores(engine: Engine) -> None:
    table = AppliedUpdate.__table__
    with engine.begin() as conn:
        conn.execute(insert(table), rows("orm-"))
        written = DriverRows(insert(table), conn.dialect, KEYS).execute(conn, rows("driver-"))
    assert written == 3
    assert stored(engine, "driver-") == stored(engine, "orm-")
    with engine.connect() as conn:
        received = conn.scalars(select(table.c.received).where(table.c.update_id == "driver-1"))
        assert received.one() == WHEN + timedelta(hours=1)


def test_a_value_bound_once_and_a_single_placeholder(engine: Engine) -> None:
    table = AppliedUpdate.__table__
    with engine.begin() as conn:
        conn.execute(insert(table), rows("one-"))
        # One placeholder: sqlite3 still takes a tuple per row.
        statement = table.update()
        update = DriverRows(statement, conn.dialect, ("received",), bound=("received",))
        assert update.execute(conn, [{"received": update.bind("received", WHEN)}]) == 3
    with engine.connect() as conn:
        assert set(conn.scalars(select(table.c.received))) == {WHEN}


def test_a_column_left_to_its_default_is_refused(engine: Engine) -> None:
    statement = insert(AppliedUpdate.__table__)
    with pytest.raises(TypeError, match=r"\['received'\] must be given by every row"):
        DriverRows(statement, engine.dialect, KEYS[:-1])
