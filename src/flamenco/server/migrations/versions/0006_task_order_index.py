"""A job's tasks in their order from an index: `tasks(job_id, index)` replaces `tasks(job_id)`,
which it also serves. A page of a job's tasks no longer sorts all of them (100,000 for a
studio's job) to give the first hundred.

Revision ID: 0006_task_order_index
"""

from __future__ import annotations

from alembic import op

revision = "0006_task_order_index"
down_revision: str | None = "0005_task_command_names"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_tasks_job_index", "tasks", ["job_id", "index"])
    op.drop_index("ix_tasks_job_id", table_name="tasks")


def downgrade() -> None:
    raise NotImplementedError("Flamenco's migrations only go forward; restore the kept copy.")
