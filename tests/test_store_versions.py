"""The components' SQLite stores are versioned and migrate (store_versions.py), on real files."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from flamenco.db import connect_sqlite
from flamenco.errors import SchemaError
from flamenco.manager.store import MIGRATIONS as MANAGER_MIGRATIONS
from flamenco.manager.store import ManagerStore
from flamenco.outbox import MIGRATIONS as OUTBOX_MIGRATIONS
from flamenco.outbox import Outbox
from flamenco.store_versions import migrate_store, script

TWO_VERSIONS = [
    script("CREATE TABLE IF NOT EXISTS items (id INTEGER PRIMARY KEY, name TEXT NOT NULL)"),
    script("ALTER TABLE items ADD COLUMN size INTEGER NOT NULL DEFAULT 0"),
]


def version(path: Path) -> int:
    db = sqlite3.connect(path)
    try:
        return db.execute("PRAGMA user_version").fetchone()[0]
    finally:
        db.close()


def test_a_new_store_gets_every_migration(tmp_path: Path) -> None:
    db = connect_sqlite(tmp_path / "s.sqlite")
    assert migrate_store(db, tmp_path / "s.sqlite", TWO_VERSIONS) == 0
    db.execute("INSERT INTO items (name, size) VALUES ('a', 3)")
    db.close()
    assert version(tmp_path / "s.sqlite") == 2


def test_a_store_from_before_versions_keeps_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    db = connect_sqlite(path)
    db.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL)")
    db.execute("INSERT INTO items (name) VALUES ('kept')")
    assert migrate_store(db, path, TWO_VERSIONS) == 0
    assert db.execute("SELECT name, size FROM items").fetchall() == [("kept", 0)]
    db.close()
    assert version(path) == 2


def test_a_newer_store_is_refused_with_one_sentence(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    db = connect_sqlite(path)
    db.execute("PRAGMA user_version = 3")
    with pytest.raises(SchemaError) as raised:
        migrate_store(db, path, TWO_VERSIONS)
    db.close()
    assert raised.value.message == (
        f"The store {path} is at version 3, newer than this Flamenco knows (2): "
        "a newer Flamenco wrote it, so run that one."
    )


def test_a_failed_migration_leaves_the_store_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    db = connect_sqlite(path)
    migrate_store(db, path, TWO_VERSIONS[:1])
    db.execute("INSERT INTO items (name) VALUES ('kept')")

    def fails_midway(db: sqlite3.Connection) -> None:
        db.execute("CREATE TABLE other (id INTEGER)")
        db.execute("INSERT INTO items (name) VALUES (NULL)")  # NOT NULL: fails

    with pytest.raises(SchemaError, match=r"from version 1 to 3 failed .*left as it was"):
        migrate_store(db, path, [*TWO_VERSIONS, fails_midway])
    db.close()
    assert version(path) == 1
    old = sqlite3.connect(path)
    assert old.execute("SELECT * FROM items").fetchall() == [(1, "kept")]  # no size column
    tables = {r[0] for r in old.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert "other" not in tables
    old.close()


@pytest.mark.parametrize(
    ("opener", "migrations"),
    [(ManagerStore, MANAGER_MIGRATIONS), (Outbox, OUTBOX_MIGRATIONS)],
    ids=["manager-store", "outbox"],
)
def test_the_stores_are_versioned_and_refuse_newer(
    tmp_path: Path, opener: type, migrations: list
) -> None:
    path = tmp_path / "store.sqlite"
    opener(path).db.close()
    assert version(path) == len(migrations)
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {len(migrations) + 1}")
    db.close()
    with pytest.raises(SchemaError, match="newer than this Flamenco knows"):
        opener(path)


def test_a_manager_on_a_newer_store_stops_with_the_sentence(tmp_path: Path) -> None:
    store = tmp_path / "manager.sqlite"
    db = sqlite3.connect(store)
    db.execute(f"PRAGMA user_version = {len(MANAGER_MIGRATIONS) + 1}")
    db.close()
    command = [sys.executable, "-m", "flamenco", "manager", "--data-dir", str(tmp_path)]
    command += ["--token", "t", "--server", "http://127.0.0.1:9", "--no-announce"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLAMENCO_")}
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 1
    assert (
        f"Error: The store {store} is at version {len(MANAGER_MIGRATIONS) + 1}, newer than this "
        "Flamenco knows" in " ".join(done.stderr.split())
    )
    assert version(store) == len(MANAGER_MIGRATIONS) + 1  # left alone
