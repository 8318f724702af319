"""Jobs that wait for jobs (submit --after): `job_dependencies` and the flag `jobs.waits_for_jobs`
that leasing reads.

Revision ID: 0004_job_dependencies
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_job_dependencies"
down_revision: str | None = "0003_notifications"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as table:
        table.add_column(sa.Column("waits_for_jobs", sa.Boolean(), nullable=True))
    op.execute(
        sa.table("jobs", sa.column("waits_for_jobs", sa.Boolean()))
        .update()
        .values(waits_for_jobs=False)
    )
    with op.batch_alter_table("jobs") as table:
        table.alter_column("waits_for_jobs", existing_type=sa.Boolean(), nullable=False)

    op.create_table(
        "job_dependencies",
        sa.Column("job_id", sa.String(length=32), nullable=False),
        sa.Column("after_job_id", sa.String(length=32), nullable=False),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("job_id", "after_job_id"),
    )
    op.create_index("ix_job_dependencies_after_job_id", "job_dependencies", ["after_job_id"])


def downgrade() -> None:
    raise NotImplementedError("Flamenco's migrations only go forward; restore the kept copy.")
