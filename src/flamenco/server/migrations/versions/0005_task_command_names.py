"""A task's type is the name of the Worker command that runs it (`flamenco.commands`): render
tasks, type "blender" until now, are "blender-render". Workers still take "blender" for a task
leased before the upgrade.

Revision ID: 0005_task_command_names
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_task_command_names"
down_revision: str | None = "0004_job_dependencies"
branch_labels = None
depends_on = None


def upgrade() -> None:
    tasks = sa.table("tasks", sa.column("type", sa.String()))
    op.execute(tasks.update().where(tasks.c.type == "blender").values(type="blender-render"))


def downgrade() -> None:
    raise NotImplementedError("Flamenco's migrations only go forward; restore the kept copy.")
