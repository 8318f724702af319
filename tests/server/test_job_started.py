"""Migration 0007 and `jobs.started`: on real SQLite and PostgreSQL holding real rows, a job's
start is filled from its earliest applied `active` report (not an ignored one, not another
job's); afterwards the update intake records a new job's start once, at its first run, without
touching the job's `updated`, and its task pages and timeline say it."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from serverkit import add_job, add_manager, lease_sync, task_update
from sqlalchemy import text

from flamenco.config import ServerSettings
from flamenco.core.states import TaskStatus
from flamenco.db import make_engine
from flamenco.server.schema import upgrade_schema
from flamenco.server.services import build_services

BEFORE = "0006_task_order_index"
AFTER = "0007_job_started"
JOB = (
    "INSERT INTO jobs (id, name, type, status, priority, submitter, settings, files, sites,"
    " output_dir, frames_total, created, updated, waits_for_jobs, notify_url) VALUES ('{id}',"
    " '{id}', 'blender-render', 'active', 50, 'alice',"
    " '{{\"blend\": \"s.blend\", \"frames\": \"1-2\"}}', '{{}}', '[]', '/tmp/out', 2,"
    " '2026-01-02 03:04:05', '2026-01-02 03:04:05', false, '')"
)
TASK = (
    'INSERT INTO tasks (id, job_id, "index", name, type, status, frames, command, depends_on,'
    " requirements, progress, activity, failure_count, log_tail, updated) VALUES ('{id}',"
    " '{job}', {index}, 'render {index}', 'blender-render', 'completed', '[1]', '{{}}', '[]',"
    " '{{}}', 1.0, '', 0, '', '2026-01-02 03:04:05')"
)
REPORT = (
    "INSERT INTO applied_updates (update_id, task_id, outcome, status, worker, received)"
    " VALUES ('{id}', '{task}', '{outcome}', '{status}', 'w1', '{at}')"
)


def test_a_jobs_start_is_filled_then_recorded_once(database_url: str, tmp_path: Path) -> None:
    upgrade_schema(database_url, target=BEFORE)
    engine = make_engine(database_url)
    with engine.begin() as conn:
        for statement in (
            JOB.format(id="old"),
            JOB.format(id="other"),
            JOB.format(id="never"),
            TASK.format(id="a", job="old", index=0),
            TASK.format(id="b", job="old", index=1),
            TASK.format(id="c", job="other", index=0),
            # Ignored (a late report of a task finished elsewhere): not the start.
            REPORT.format(
                id="u1", task="a", outcome="ignored", status="active", at="2026-01-03 10:00:00"
            ),
            REPORT.format(
                id="u2", task="b", outcome="applied", status="active", at="2026-01-03 10:00:07"
            ),
            REPORT.format(
                id="u3", task="a", outcome="applied", status="active", at="2026-01-03 10:00:05"
            ),
            REPORT.format(
                id="u4", task="a", outcome="applied", status="completed", at="2026-01-03 10:00:01"
            ),
            REPORT.format(
                id="u5", task="c", outcome="applied", status="active", at="2026-01-03 09:00:00"
            ),
        ):
            conn.execute(text(statement))
    engine.dispose()

    upgrade = upgrade_schema(database_url, target=AFTER)

    assert (upgrade.before, upgrade.after) == (BEFORE, AFTER)
    svc = build_services(ServerSettings(data_dir=tmp_path / "server", database_url=database_url))
    try:
        svc.auth.create_user("alice", "secret")
        assert svc.jobs.task_page("old", limit=0).started == datetime(
            2026, 1, 3, 10, 0, 5, tzinfo=UTC
        )
        assert svc.jobs.task_page("other", limit=0).started == datetime(2026, 1, 3, 9, tzinfo=UTC)
        assert svc.jobs.task_page("never", limit=0).started is None

        job = add_job(svc, "1-2", priority=90)
        manager = add_manager(svc, "site")
        first, second = lease_sync(svc, manager, want=2).leases
        assert svc.jobs.runs(job.id, last=10).started is None
        updated = svc.jobs.get(job.id).updated
        svc.leases.apply_updates(
            manager, [task_update(first.task_id, TaskStatus.ACTIVE, worker="w1")]
        )
        started = svc.jobs.task_page(job.id, limit=0).started
        assert started is not None
        assert svc.jobs.get(job.id).updated == updated  # a run starting is no change of the job
        svc.leases.apply_updates(
            manager, [task_update(second.task_id, TaskStatus.ACTIVE, worker="w2")]
        )
        assert svc.jobs.task_page(job.id, limit=0).started == started
        everything = svc.jobs.runs(job.id)
        assert everything.started == started == everything.runs[0].start
        assert svc.jobs.runs(job.id, last=1).started == started
    finally:
        svc.close()
