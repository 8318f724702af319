"""Alembic's entry for the Server's migrations.

`server/schema.py` runs them on a connection it opened and hands over in the config's
attributes, so users need no alembic.ini; every migration of one upgrade runs in that one
transaction. Batch mode lets the same migration ALTER a table on SQLite, which copies it.
"""

from __future__ import annotations

from alembic import context

import flamenco.server.models  # noqa: F401  (the tables, for the drift check)
from flamenco.db import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("The Server's migrations run through `flamenco server migrate`.")
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=True,
    transaction_per_migration=False,
)
with context.begin_transaction():
    context.run_migrations()
