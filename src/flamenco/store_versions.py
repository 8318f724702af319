"""Versions of the components' own SQLite stores (the Manager's store, the outboxes).

Each store has an ordered list of migrations; the store's `PRAGMA user_version` says how many
of them it has had. Opening a store runs the ones it lacks, all in one transaction with the new
version, so a failed one leaves the store as it was. A store whose version is beyond the list
was written by a newer Flamenco and is refused. To change a store's tables, append a migration
to its list; never edit one that has shipped.

The first migration of every store creates its tables only where missing: stores from before
versions existed are at version 0 and already have them.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path

from flamenco.db import connect_sqlite
from flamenco.errors import SchemaError

log = logging.getLogger("flamenco.store_versions")

StoreMigration = Callable[[sqlite3.Connection], None]


def script(sql: str) -> StoreMigration:
    """A migration made of SQL statements (separated by semicolons)."""

    def run(db: sqlite3.Connection) -> None:
        for statement in sql.split(";"):
            if statement.strip():
                db.execute(statement)

    return run


def open_store(path: Path, migrations: Sequence[StoreMigration]) -> sqlite3.Connection:
    """A component's store (`connect_sqlite`), brought to its newest version."""
    db = connect_sqlite(path)
    try:
        migrate_store(db, path, migrations)
    except BaseException:
        db.close()
        raise
    return db


def migrate_store(db: sqlite3.Connection, path: Path, migrations: Sequence[StoreMigration]) -> int:
    """Bring the store open on `db` (autocommit, as `connect_sqlite` opens it) to the newest
    version of `migrations`; returns the version it had."""
    found = db.execute("PRAGMA user_version").fetchone()[0]
    newest = len(migrations)
    if found > newest:
        raise SchemaError(
            f"The store {path} is at version {found}, newer than this Flamenco knows "
            f"({newest}): a newer Flamenco wrote it, so run that one."
        )
    if found == newest:
        return found
    db.execute("BEGIN IMMEDIATE")
    try:
        for migration in migrations[found:]:
            migration(db)
        db.execute(f"PRAGMA user_version = {newest:d}")
        db.execute("COMMIT")
    except Exception as exc:
        db.execute("ROLLBACK")
        raise SchemaError(
            f"Upgrading the store {path} from version {found} to {newest} failed ({exc}); "
            "it was left as it was."
        ) from exc
    except BaseException:
        db.execute("ROLLBACK")
        raise
    if found:
        log.info("Upgraded the store %s from version %d to %d", path, found, newest)
    return found
