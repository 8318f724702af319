"""Tokens that end: login tokens expire, are revoked and say when they were last used, and
outlive a removed user (user_id SET NULL); Manager tokens are revoked or rotated.

Revision ID: 0002_token_lifetimes
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0002_token_lifetimes"
down_revision: str | None = "0001_baseline"
branch_labels = None
depends_on = None

# The baseline's foreign key from api_tokens to users has no name of its own: PostgreSQL named
# it so; on SQLite batch mode gives it this name through a naming convention.
USER_FK = "api_tokens_user_id_fkey"
SQLITE_NAMES = {"fk": "%(table_name)s_%(column_0_name)s_fkey"}


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    with op.batch_alter_table(
        "api_tokens", naming_convention=SQLITE_NAMES if sqlite else None
    ) as table:
        table.add_column(sa.Column("expires", sa.DateTime(timezone=True), nullable=True))
        table.add_column(sa.Column("revoked", sa.DateTime(timezone=True), nullable=True))
        table.add_column(sa.Column("last_used", sa.DateTime(timezone=True), nullable=True))
        table.alter_column("user_id", existing_type=sa.Integer(), nullable=True)
        table.drop_constraint(USER_FK, type_="foreignkey")
        table.create_foreign_key(USER_FK, "users", ["user_id"], ["id"], ondelete="SET NULL")

    # Managers registered before this get their token's issue date now: it is when their
    # token's age starts to count.
    with op.batch_alter_table("managers") as table:
        table.add_column(sa.Column("token_issued", sa.DateTime(timezone=True), nullable=True))
        table.add_column(sa.Column("replaced_token_hash", sa.String(length=64), nullable=True))
        table.add_column(sa.Column("revoked", sa.DateTime(timezone=True), nullable=True))
        table.create_index("ix_managers_replaced_token_hash", ["replaced_token_hash"])
    managers = sa.table("managers", sa.column("token_issued", sa.DateTime(timezone=True)))
    op.execute(managers.update().values(token_issued=datetime.now(UTC)))
    with op.batch_alter_table("managers") as table:
        table.alter_column("token_issued", existing_type=sa.DateTime(timezone=True), nullable=False)


def downgrade() -> None:
    raise NotImplementedError("Flamenco's migrations only go forward; restore the kept copy.")
