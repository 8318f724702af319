"""When a job started, kept on the job: `jobs.started`, the time its first run was reported
active, set by the update intake. Found before from the reports of every job (an index on
status), which grew with the Server's whole history; filled here from those reports.

Revision ID: 0007_job_started
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_job_started"
down_revision: str | None = "0006_task_order_index"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as table:
        table.add_column(sa.Column("started", sa.DateTime(timezone=True), nullable=True))
    jobs = sa.table(
        "jobs", sa.column("id", sa.String()), sa.column("started", sa.DateTime(timezone=True))
    )
    tasks = sa.table("tasks", sa.column("id", sa.String()), sa.column("job_id", sa.String()))
    reports = sa.table(
        "applied_updates",
        sa.column("task_id", sa.String()),
        sa.column("status", sa.String()),
        sa.column("outcome", sa.String()),
        sa.column("received", sa.DateTime(timezone=True)),
    )
    first_active = (
        sa.select(sa.func.min(reports.c.received))
        .join(tasks, tasks.c.id == reports.c.task_id)
        .where(
            tasks.c.job_id == jobs.c.id,
            reports.c.status == "active",
            reports.c.outcome == "applied",
        )
        .scalar_subquery()
    )
    op.execute(jobs.update().values(started=first_active))


def downgrade() -> None:
    raise NotImplementedError("Flamenco's migrations only go forward; restore the kept copy.")
