"""The Server's schema: Alembic migrations (`server/migrations/versions/`), run at start and
by `flamenco server migrate`.

A database is brought to the newest revision in one transaction: on PostgreSQL, whose DDL is
transactional, and on SQLite, whose DDL is too once the driver stops committing on its own
(`_migration_engine`). A SQLite file is also copied first, with SQLite's backup API, next to
itself (`server.sqlite.before-<revision>-<time>`). A database from before migrations existed
(tables made by `create_all`, no `alembic_version`) is recognised by its columns: one of the
last release runs the baseline, which creates only what it lacks; one of today's is stamped.
One stamped with a revision this code does not know is newer than the code and is refused.
"""

from __future__ import annotations

import logging
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Connection, Engine, create_engine, event, inspect, make_url
from sqlalchemy.pool import NullPool

from flamenco.errors import SchemaError

log = logging.getLogger("flamenco.server.schema")

MIGRATIONS = Path(__file__).with_name("migrations")
BASELINE = "0001_baseline"
TOKEN_LIFETIMES = "0002_token_lifetimes"


@dataclass(frozen=True)
class SchemaUpgrade:
    """What bringing a database to the newest revision did."""

    before: str | None  # the revision found; None: no tables yet
    after: str
    recognised: bool  # a database from before migrations, stamped as `before`
    kept_copy: Path | None  # the SQLite file as it was

    @property
    def changed(self) -> bool:
        return self.before != self.after

    def describe(self) -> str:
        if self.before is None:
            return f"Created the database's tables at revision {self.after}."
        if not self.changed:
            found = " (recognised from its tables and stamped)" if self.recognised else ""
            return f"The database is up to date at revision {self.after}{found}."
        found = " (recognised from its tables)" if self.recognised else ""
        copy = f"; the file as it was is kept at {self.kept_copy}" if self.kept_copy else ""
        return f"Upgraded the database from revision {self.before}{found} to {self.after}{copy}."


def head_revision(migrations: Path = MIGRATIONS) -> str:
    head = ScriptDirectory(str(migrations)).get_current_head()
    assert head is not None, f"no migrations in {migrations}"
    return head


def upgrade_schema(
    url: str, migrations: Path = MIGRATIONS, target: str | None = None
) -> SchemaUpgrade:
    """Bring the database at `url` to the newest revision (or `target`, for tests that make
    an older database), or leave it as it was."""
    # Alembic's own lines name every step and guess at transactions it does not hold here;
    # what was done is logged once below.
    logging.getLogger("alembic").setLevel(logging.WARNING)
    engine = _migration_engine(url)
    try:
        return _upgrade(engine, url, migrations, target or head_revision(migrations))
    finally:
        engine.dispose()


def _upgrade(engine: Engine, url: str, migrations: Path, head: str) -> SchemaUpgrade:
    script = ScriptDirectory(str(migrations))
    with engine.connect() as conn:
        current = MigrationContext.configure(conn).get_current_revision()
        recognised = None if current else recognise_revision(conn)
    if current is not None:
        try:
            script.get_revision(current)
        except CommandError:
            raise SchemaError(
                f"The database is at schema revision {current}, which this Flamenco does not "
                f"know (its newest is {head_revision(migrations)}): a newer Flamenco "
                "upgraded it, so run that one."
            ) from None
    before = current or recognised
    kept = None
    if before is not None and before != head:
        kept = _keep_copy(url, head)
    config = Config()
    config.set_main_option("script_location", str(migrations))
    try:
        with engine.begin() as conn:
            config.attributes["connection"] = conn
            # The baseline creates only what is missing, as create_all did: a database from
            # before migrations runs it, and gets any table or index an older release lacked.
            if recognised and recognised != BASELINE:
                command.stamp(config, recognised)
            command.upgrade(config, head)
    except Exception as exc:
        copy = f" (a copy is kept at {kept})" if kept else ""
        raise SchemaError(
            f"Upgrading the database from revision {before} to {head} failed ({exc}); "
            f"it was left as it was{copy}."
        ) from exc
    upgrade = SchemaUpgrade(before, head, recognised is not None, kept)
    if upgrade.changed or upgrade.recognised:
        log.info("%s", upgrade.describe())
    return upgrade


def recognise_revision(conn: Connection) -> str | None:
    """The revision a database without `alembic_version` equals, by its columns; None when it
    has no Server tables (a new database)."""
    tables = inspect(conn).get_table_names()
    if "jobs" not in tables:
        return None
    token_columns = {c["name"] for c in inspect(conn).get_columns("api_tokens")}
    return TOKEN_LIFETIMES if "expires" in token_columns else BASELINE


def _migration_engine(url: str) -> Engine:
    if not url.startswith("sqlite"):
        return create_engine(url, poolclass=NullPool)
    engine = create_engine(url, poolclass=NullPool, connect_args={"timeout": 30})

    # pysqlite commits before DDL and begins only before DML; take the transactions over so
    # that CREATE and ALTER roll back with the rest. IMMEDIATE: no other writer in between.
    @event.listens_for(engine, "connect")
    def _no_driver_transactions(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def _keep_copy(url: str, head: str) -> Path | None:
    """A copy of a SQLite database file as it is, next to it, before it is upgraded."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database:
        return None
    path = Path(parsed.database)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    copy = path.with_name(f"{path.name}.before-{head}-{stamp}")
    source = sqlite3.connect(path)
    target = sqlite3.connect(copy)
    try:
        source.backup(target)  # consistent whatever is in the WAL
    finally:
        target.close()
        source.close()
    log.info("Kept a copy of %s as it was at %s", path, copy)
    return copy
