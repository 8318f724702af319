"""`flamenco server …`: the Server's commands besides running it (which main.py's `server`
callback does when no command follows)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from flamenco.cli.console import err
from flamenco.config import ServerSettings
from flamenco.errors import SchemaError

server_app = typer.Typer(
    help="Run the Server (with no command), or look after its database.",
    invoke_without_command=True,
)

DataDirOpt = Annotated[Path | None, typer.Option(help="Where jobs, frames and the DB live.")]
DatabaseUrlOpt = Annotated[str | None, typer.Option(help="SQLAlchemy URL; default SQLite.")]


@server_app.command()
def migrate(data_dir: DataDirOpt = None, database_url: DatabaseUrlOpt = None) -> None:
    """Upgrade the Server's database to this version's schema and say what was done.

    The Server also does it as it starts. A SQLite file is copied next to itself first.
    """
    from flamenco.cli.main import load_settings
    from flamenco.db import sqlite_url
    from flamenco.server.schema import upgrade_schema

    settings = load_settings(ServerSettings, {"data_dir": data_dir, "database_url": database_url})
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    url = settings.database_url or sqlite_url(settings.data_dir / "server.sqlite")
    try:
        upgrade = upgrade_schema(url)
    except SchemaError as exc:
        err.print(f"Error: {exc.message}", style="red")
        raise typer.Exit(1) from None
    print(upgrade.describe())
