"""Migration 0006: `tasks(job_id, index)` replaces `tasks(job_id)`, on real SQLite and
PostgreSQL holding real rows; the tasks are served in their order afterwards, and on SQLite
a page of a job's tasks reads them from the index instead of sorting them all."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import inspect, text

from flamenco.config import ServerSettings
from flamenco.db import make_engine
from flamenco.server.schema import upgrade_schema
from flamenco.server.services import build_services

BEFORE = "0005_task_command_names"
AFTER = "0006_task_order_index"
JOB = (
    "INSERT INTO jobs (id, name, type, status, priority, submitter, settings, files, sites,"
    " output_dir, frames_total, created, updated, waits_for_jobs, notify_url) VALUES ('{id}',"
    " '{id}', 'blender-render', 'active', 50, 'alice',"
    " '{{\"blend\": \"s.blend\", \"frames\": \"1-3\"}}', '{{}}', '[]', '/tmp/out', 3,"
    " '2026-01-02 03:04:05', '2026-01-02 03:04:05', false, '')"
)
TASK = (
    'INSERT INTO tasks (id, job_id, "index", name, type, status, frames, command, depends_on,'
    " requirements, progress, activity, failure_count, log_tail, updated) VALUES ('{id}',"
    " '{job}', {index}, 'render {frame}', 'blender-render', '{status}', '[{frame}]', '{{}}',"
    " '[]', '{{}}', {progress}, '', 0, '', '2026-01-02 03:04:05')"
)


def task_indexes(url: str) -> dict[str, list[str]]:
    engine = make_engine(url)
    try:
        return {
            index["name"]: list(index["column_names"])
            for index in inspect(engine).get_indexes("tasks")
        }
    finally:
        engine.dispose()


def test_the_order_index_replaces_the_job_index_and_rows_are_served_in_order(
    database_url: str, tmp_path: Path
) -> None:
    upgrade_schema(database_url, target=BEFORE)
    assert task_indexes(database_url)["ix_tasks_job_id"] == ["job_id"]
    engine = make_engine(database_url)
    with engine.begin() as conn:  # inserted out of order, in two jobs
        conn.execute(text(JOB.format(id="big")))
        conn.execute(text(JOB.format(id="other")))
        for task_id, job, index, status, progress in (
            ("c", "big", 2, "queued", 0.0),
            ("a", "big", 0, "completed", 1.0),
            ("z", "other", 0, "queued", 0.0),
            ("b", "big", 1, "active", 0.25),
        ):
            conn.execute(
                text(
                    TASK.format(
                        id=task_id,
                        job=job,
                        index=index,
                        frame=index + 1,
                        status=status,
                        progress=progress,
                    )
                )
            )
    engine.dispose()

    upgrade = upgrade_schema(database_url, target=AFTER)

    assert (upgrade.before, upgrade.after) == (BEFORE, AFTER)
    indexes = task_indexes(database_url)
    assert indexes["ix_tasks_job_index"] == ["job_id", "index"]
    assert "ix_tasks_job_id" not in indexes
    services = build_services(
        ServerSettings(data_dir=tmp_path / "server", database_url=database_url)
    )
    try:
        page = services.jobs.task_page("big", offset=1, limit=2)
        assert [(t.id, t.frames) for t in page.tasks] == [("b", [2]), ("c", [3])]
        assert page.total == 3 and page.counts == {"queued": 1, "completed": 1, "active": 1}
        job = services.jobs.get("big")
        assert (job.tasks_total, job.tasks_completed, job.progress) == (3, 1, 0.4167)
        if database_url.startswith("sqlite"):
            with services.engine.connect() as conn:
                plan = " ".join(
                    row[3]
                    for row in conn.exec_driver_sql(
                        'EXPLAIN QUERY PLAN SELECT id FROM tasks WHERE job_id = ? ORDER BY "index"'
                        " LIMIT 100 OFFSET 500",
                        ("big",),
                    )
                )
            assert "ix_tasks_job_index" in plan and "TEMP B-TREE" not in plan, plan
    finally:
        services.close()
