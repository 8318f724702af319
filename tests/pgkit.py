"""A PostgreSQL database of its own for one test, on the local server (trust auth)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import sqlalchemy

# The server's `test` database, used only to create and drop the tests' own databases.
ADMIN_URL = os.environ.get(
    "FLAMENCO_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


@contextmanager
def postgres_database() -> Iterator[str]:
    """The URL of a new, empty database, dropped afterwards whatever happens."""
    name = f"flamenco_{uuid.uuid4().hex[:12]}"
    admin = sqlalchemy.create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    except sqlalchemy.exc.OperationalError as exc:
        admin.dispose()
        pytest.fail(f"PostgreSQL is needed for these tests and is not reachable: {exc}")
    try:
        yield admin.url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()
