"""The Server's schema migrations (server/schema.py) on real SQLite files and a real
PostgreSQL: the models equal the migrated schema, databases from before migrations are
recognised and upgraded with their rows, a newer one is refused, a failed one is untouched."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text

import flamenco.server.models  # noqa: F401  (the tables)
from flamenco.config import ServerSettings
from flamenco.db import Base, make_engine
from flamenco.errors import SchemaError
from flamenco.security import hash_password, token_hash
from flamenco.server.schema import (
    BASELINE,
    MIGRATIONS,
    TOKEN_LIFETIMES,
    head_revision,
    upgrade_schema,
)
from flamenco.server.services import build_services

HEAD = head_revision()


def run_sql(url: str, *statements: str) -> list[tuple]:
    engine = make_engine(url)  # as the Server's: foreign keys enforced on SQLite too
    try:
        with engine.begin() as conn:
            rows: list[tuple] = []
            for statement in statements:
                result = conn.execute(text(statement))
                if result.returns_rows:
                    rows = [tuple(r) for r in result]
            return rows
    finally:
        engine.dispose()


def drift(url: str) -> list:
    engine = sqlalchemy.create_engine(url)
    try:
        with engine.connect() as conn:
            return compare_metadata(MigrationContext.configure(conn), Base.metadata)
    finally:
        engine.dispose()


def kept_copies(url: str) -> list[Path]:
    if not url.startswith("sqlite"):
        return []
    path = Path(sqlalchemy.make_url(url).database or "")
    return sorted(path.parent.glob(f"{path.name}.before-*"))


BASELINE_ROWS = (
    "INSERT INTO users (id, name, password_hash, is_admin, created)"
    " VALUES (1, 'alice', 'x', true, '2026-01-02 03:04:05')",
    "INSERT INTO api_tokens (id, user_id, token_hash, label, created)"
    " VALUES (1, 1, 'hash-1', 'login', '2026-01-02 03:04:05')",
    "INSERT INTO managers (id, name, token_hash, address, workers, worker_states)"
    " VALUES (1, 'site-a', 'mhash', '', '[]', '{}')",
)


def test_the_models_equal_the_migrated_schema(database_url: str) -> None:
    """The guard against a model change without its migration (see ARCHITECTURE.md)."""
    upgrade = upgrade_schema(database_url)
    assert (upgrade.before, upgrade.after) == (None, HEAD)
    assert drift(database_url) == []
    assert kept_copies(database_url) == []  # nothing was in it
    again = upgrade_schema(database_url)
    assert not again.changed
    assert again.describe() == f"The database is up to date at revision {HEAD}."


def test_a_database_from_before_migrations_is_recognised_and_upgraded(database_url: str) -> None:
    upgrade_schema(database_url, target=BASELINE)  # the last release's tables
    run_sql(database_url, "DROP TABLE alembic_version", *BASELINE_ROWS)  # as create_all left them
    # Made before the release that added blob claims and an index of tasks, as create_all
    # left older databases: the upgrade adds them, as create_all did.
    run_sql(database_url, "DROP TABLE blob_claims", "DROP INDEX ix_tasks_job_status_index")

    upgrade = upgrade_schema(database_url)

    assert (upgrade.before, upgrade.after, upgrade.recognised) == (BASELINE, HEAD, True)
    assert drift(database_url) == []
    tokens = run_sql(database_url, "SELECT user_id, token_hash, expires, revoked FROM api_tokens")
    assert tokens == [(1, "hash-1", None, None)]
    managers = run_sql(database_url, "SELECT name, token_hash, token_issued FROM managers")
    assert [m[:2] for m in managers] == [("site-a", "mhash")]
    assert managers[0][2] is not None  # its token's age counts from the upgrade
    if database_url.startswith("sqlite"):
        (copy,) = kept_copies(database_url)
        assert upgrade.kept_copy == copy
        assert copy.name.startswith(f"server.sqlite.before-{HEAD}-")
        old = sqlite3.connect(copy)
        assert old.execute("SELECT token_hash FROM api_tokens").fetchall() == [("hash-1",)]
        old.close()
    # The user_id foreign key is SET NULL now: removing a user keeps its token's row.
    run_sql(database_url, "DELETE FROM users WHERE id = 1")
    assert run_sql(database_url, "SELECT user_id FROM api_tokens") == [(None,)]


def test_a_database_made_by_todays_code_before_migrations_is_only_stamped(
    database_url: str,
) -> None:
    upgrade_schema(database_url, target=TOKEN_LIFETIMES)
    run_sql(database_url, "DROP TABLE alembic_version")
    upgrade = upgrade_schema(database_url)
    # Stamped as the revision it is; only the migrations after that one run on it.
    later = HEAD != TOKEN_LIFETIMES
    assert (upgrade.before, upgrade.recognised, upgrade.changed) == (TOKEN_LIFETIMES, True, later)
    assert run_sql(database_url, "SELECT version_num FROM alembic_version") == [(HEAD,)]
    assert drift(database_url) == []


def test_a_database_newer_than_the_code_is_refused(database_url: str) -> None:
    upgrade_schema(database_url)
    run_sql(database_url, "UPDATE alembic_version SET version_num = '0099_from_the_future'")
    with pytest.raises(SchemaError) as raised:
        upgrade_schema(database_url)
    assert raised.value.message == (
        "The database is at schema revision 0099_from_the_future, which this Flamenco does "
        f"not know (its newest is {HEAD}): a newer Flamenco upgraded it, so run that one."
    )


FAILING_MIGRATION = f'''
import sqlalchemy as sa
from alembic import op

revision = "0999_fails_midway"
down_revision = "{HEAD}"


def upgrade() -> None:
    op.add_column("jobs", sa.Column("half_done", sa.Integer(), nullable=True))
    op.execute("UPDATE users SET name = 'renamed'")
    op.create_table("half_made", sa.Column("id", sa.Integer(), primary_key=True))
    raise RuntimeError("this migration fails midway")
'''


def test_a_failed_migration_leaves_the_database_as_it_was(
    database_url: str, tmp_path: Path
) -> None:
    upgrade_schema(database_url, target=BASELINE)
    run_sql(database_url, *BASELINE_ROWS)
    migrations = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS, migrations, ignore=shutil.ignore_patterns("__pycache__"))
    (migrations / "versions" / "0999_fails_midway.py").write_text(FAILING_MIGRATION)

    with pytest.raises(SchemaError) as raised:
        upgrade_schema(database_url, migrations)

    message = raised.value.message
    assert message.startswith(
        f"Upgrading the database from revision {BASELINE} to 0999_fails_midway failed "
        "(this migration fails midway); it was left as it was"
    )
    # Readable by the old code: the baseline's revision, tables and rows, nothing half-done.
    assert run_sql(database_url, "SELECT version_num FROM alembic_version") == [(BASELINE,)]
    assert run_sql(database_url, "SELECT name FROM users") == [("alice",)]
    inspector_engine = sqlalchemy.create_engine(database_url)
    try:
        inspector = sqlalchemy.inspect(inspector_engine)
        assert "half_made" not in inspector.get_table_names()
        assert "half_done" not in {c["name"] for c in inspector.get_columns("jobs")}
        assert "expires" not in {c["name"] for c in inspector.get_columns("api_tokens")}
    finally:
        inspector_engine.dispose()
    if database_url.startswith("sqlite"):
        (copy,) = kept_copies(database_url)
        assert f"(a copy is kept at {copy})" in message
    # And the real migrations still take it from there.
    assert upgrade_schema(database_url).after == HEAD
    assert drift(database_url) == []


def test_flamenco_server_migrate_says_what_it_did(tmp_path: Path) -> None:
    data = tmp_path / "server"
    url = f"sqlite:///{data / 'server.sqlite'}"
    data.mkdir()
    upgrade_schema(url, target=BASELINE)
    run_sql(url, "DROP TABLE alembic_version", *BASELINE_ROWS)
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLAMENCO_SERVER_")}
    command = [sys.executable, "-m", "flamenco", "server", "migrate", "--data-dir", str(data)]

    done = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)

    assert done.returncode == 0, done.stderr
    (copy,) = kept_copies(url)
    assert done.stdout.strip() == (
        f"Upgraded the database from revision {BASELINE} (recognised from its tables) "
        f"to {HEAD}; the file as it was is kept at {copy}."
    )
    run_sql(url, "UPDATE alembic_version SET version_num = '0099_from_the_future'")
    refused = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)
    assert refused.returncode == 1
    assert "Error: The database is at schema revision 0099_from_the_future" in " ".join(
        refused.stderr.split()
    )
    # The Server itself refuses to start on it, with the same sentence.
    serve = [sys.executable, "-m", "flamenco", "server", "--data-dir", str(data), "--port", "0"]
    started = subprocess.run(serve, capture_output=True, text=True, timeout=120, env=env)
    assert started.returncode == 1
    assert "Error: The database is at schema revision 0099_from_the_future" in " ".join(
        started.stderr.split()
    )


JOB_ROWS = (
    "INSERT INTO jobs (id, name, type, status, priority, submitter, settings, files, sites,"
    " output_dir, frames_total, created, updated) VALUES ('job1', 'from before', 'blender-render',"
    " 'completed', 50, 'alice', '{\"blend\": \"s.blend\", \"frames\": \"1\"}', '{}', '[]',"
    " '/tmp/out', 1, '2026-01-02 03:04:05', '2026-01-02 03:04:05')",
    "INSERT INTO tasks (id, job_id, index, name, type, status, frames, command, depends_on,"
    " requirements, progress, activity, failure_count, log_tail, updated) VALUES ('task1',"
    " 'job1', 0, 'render 1', 'blender-render', 'completed', '[1]', '{}', '[]', '{}', 1.0, '',"
    " 0, '', '2026-01-02 03:04:05')",
    "INSERT INTO outputs (job_id, task_id, frame, sha256, size, width, height, filename,"
    " created) VALUES ('job1', 'task1', 1, 'abc', 10, 96, 54, 'frame_000001.png',"
    " '2026-01-02 03:04:05')",
)


def test_rows_from_before_migrations_are_served_after_the_upgrade(
    database_url: str, tmp_path: Path
) -> None:
    """The baseline's rows (a user, its token, a Manager, a finished job with a frame) through
    the Server's own services once a Server starts on the upgraded database."""
    upgrade_schema(database_url, target=BASELINE)
    user_token, manager_token = "user-token-from-before", "manager-token-from-before"
    run_sql(
        database_url,
        "DROP TABLE alembic_version",
        "INSERT INTO users (name, password_hash, is_admin, created) VALUES"
        f" ('alice', '{hash_password('secret')}', true, '2026-01-02 03:04:05')",
        "INSERT INTO api_tokens (user_id, token_hash, label, created) SELECT id,"
        f" '{token_hash(user_token)}', 'login', '2026-01-02 03:04:05' FROM users",
        "INSERT INTO managers (name, token_hash, address, workers, worker_states) VALUES"
        f" ('site-a', '{token_hash(manager_token)}', '', '[]', '{{}}')",
        *(row.replace(" index,", ' "index",') for row in JOB_ROWS),
    )

    services = build_services(
        ServerSettings(data_dir=tmp_path / "server", database_url=database_url)
    )
    try:
        assert services.auth.user_for_token(user_token).name == "alice"
        assert services.auth.manager_for_token(manager_token).name == "site-a"
        job = services.jobs.get("job1")
        assert (job.name, job.status) == ("from before", "completed")
        assert [(f.frame, f.sha256) for f in services.jobs.frames("job1")] == [(1, "abc")]
        services.auth.create_user("bob", "another secret")  # and it takes new rows
        assert services.auth.user_exists("bob")
    finally:
        services.close()
