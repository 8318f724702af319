"""Migration 0005: stored render tasks of type "blender" become "blender-render" (the name of
the Worker command that runs them), on real SQLite and PostgreSQL holding real rows; a queued
one is then leased under its new name and the finished ones keep theirs."""

from __future__ import annotations

from pathlib import Path

from serverkit import add_manager, lease_sync
from sqlalchemy import text

from flamenco.config import ServerSettings
from flamenco.db import make_engine
from flamenco.server.schema import upgrade_schema
from flamenco.server.services import build_services

BEFORE = "0004_job_dependencies"
JOB = (
    "INSERT INTO jobs (id, name, type, status, priority, submitter, settings, files, sites,"
    " output_dir, frames_total, created, updated, waits_for_jobs, notify_url) VALUES ('{id}',"
    " '{id}', 'blender-render', '{status}', 50, 'alice',"
    ' \'{{"blend": "s.blend", "frames": "1-2"}}\','
    " '{{\"s.blend\": \"{sha}\"}}', '[]', '/tmp/out', 2, '2026-01-02 03:04:05',"
    " '2026-01-02 03:04:05', false, '')"
)
TASK = (
    'INSERT INTO tasks (id, job_id, "index", name, type, status, frames, command, depends_on,'
    " requirements, progress, activity, failure_count, log_tail, updated) VALUES ('{id}',"
    " '{job}', {index}, '{id}', '{type}', '{status}', '[1]', '{{}}', '{depends}', '{{}}', 0.0,"
    " '', 0, '', '2026-01-02 03:04:05')"
)
SHA = "a" * 64


def task_types(url: str) -> dict[str, str]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return dict(conn.execute(text("SELECT id, type FROM tasks")).all())  # type: ignore[arg-type]
    finally:
        engine.dispose()


def test_render_tasks_are_renamed_and_lease_under_the_new_name(
    database_url: str, tmp_path: Path
) -> None:
    upgrade_schema(database_url, target=BEFORE)
    engine = make_engine(database_url)
    with engine.begin() as conn:
        for statement in (
            JOB.format(id="done", status="completed", sha=SHA),
            TASK.format(
                id="r1", job="done", index=0, type="blender", status="completed", depends="[]"
            ),
            TASK.format(
                id="v1", job="done", index=1, type="ffmpeg", status="completed", depends="[0]"
            ),
            JOB.format(id="todo", status="queued", sha=SHA),
            TASK.format(
                id="r2", job="todo", index=0, type="blender", status="queued", depends="[]"
            ),
            TASK.format(
                id="x1", job="todo", index=1, type="studio-thing", status="queued", depends="[0]"
            ),
        ):
            conn.execute(text(statement))
    engine.dispose()

    upgrade = upgrade_schema(database_url, target="0005_task_command_names")

    assert (upgrade.before, upgrade.after) == (BEFORE, "0005_task_command_names")
    assert task_types(database_url) == {
        "r1": "blender-render",
        "v1": "ffmpeg",
        "r2": "blender-render",
        "x1": "studio-thing",
    }
    services = build_services(
        ServerSettings(data_dir=tmp_path / "server", database_url=database_url)
    )
    try:
        assert [t.type for t in services.jobs.tasks("done")] == ["blender-render", "ffmpeg"]
        (lease,) = lease_sync(services, add_manager(services, "site-a"), want=2).leases
        assert (lease.task_id, lease.type) == ("r2", "blender-render")
    finally:
        services.close()
