"""`flamenco server …`: the Server's commands besides running it (which main.py's `server`
callback does when no command follows)."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from flamenco.cli.console import err
from flamenco.config import ServerSettings
from flamenco.errors import Conflict, SchemaError
from flamenco.netaddr import public_host, service_url

if TYPE_CHECKING:
    from flamenco.server.services import ServerServices

log = logging.getLogger("flamenco.server")

FIRST_ADMIN = "admin"

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
    from flamenco.db import sqlite_url
    from flamenco.server.schema import upgrade_schema

    settings = _database_settings(data_dir, database_url)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    url = settings.database_url or sqlite_url(settings.data_dir / "server.sqlite")
    with database_errors():
        upgrade = upgrade_schema(url)
    print(upgrade.describe())


@server_app.command()
def init(
    admin: Annotated[str, typer.Option(help="The administrator's login name.")] = FIRST_ADMIN,
    data_dir: DataDirOpt = None,
    database_url: DatabaseUrlOpt = None,
) -> None:
    """Create the Server's first administrator and print its password and a token, once.

    Run it on the Server's machine with the Server's --data-dir or --database-url (the Server
    may be running); refused once the database has an administrator.
    """
    from flamenco.server.services import build_services

    settings = _database_settings(data_dir, database_url)
    with database_errors():
        services = build_services(settings)  # the database brought up to date as at start
        try:
            password = secrets.token_urlsafe(12)
            services.auth.create_first_administrator(admin, password)
            token = services.auth.issue_token(admin, label="flamenco server init")
        finally:
            services.close()
    days = settings.token_ttl_days
    url = service_url(
        "https" if settings.tls_cert else "http", public_host(settings.host, ""), settings.port
    )
    err.print(f"Administrator '{admin}' created. Its password and an API token, shown only now:")
    print(f"password: {password}")
    print(f"token: {token}")
    err.print(
        f"Log in to the Dashboard or the Blender add-on as '{admin}' with the password; on the "
        f"command line: FLAMENCO_SERVER={url} FLAMENCO_TOKEN=<token> flamenco jobs list "
        + (f"(the token expires in {days:g} days)." if days else "(the token does not expire).")
    )


def say_how_to_create_first_admin(services: ServerServices) -> None:
    """A fresh Server (as a service, without `flamenco up`) has no user yet: its log says how
    to make the first one."""
    if not services.auth.has_administrator():
        log.warning(
            "This Server has no administrator yet: create the first one with "
            "`flamenco server init [--admin NAME]`, given the same --data-dir or "
            "--database-url as this Server."
        )


@contextmanager
def database_errors() -> Iterator[None]:
    """A database that cannot be used (an unreadable URL, one that does not answer, one newer
    than this code, an administrator there already) stops the command with one sentence."""
    from sqlalchemy.exc import ArgumentError, OperationalError

    try:
        yield
    except (SchemaError, Conflict) as exc:
        sentence = exc.message
    except ArgumentError as exc:  # also a dialect SQLAlchemy does not know
        sentence = f"The database URL cannot be used: {exc}."
    except ImportError as exc:  # its driver: mysql:// without MySQLdb, say
        sentence = (
            f"The database URL needs a driver that is not installed ({exc.name}); "
            "for PostgreSQL, install Flamenco's `postgres` extra."
        )
    except OperationalError as exc:
        sentence = f"The database cannot be reached: {str(exc.orig).strip()}"
    else:
        return
    err.print(f"Error: {sentence}", style="red")
    raise typer.Exit(1)


def _database_settings(data_dir: Path | None, database_url: str | None) -> ServerSettings:
    """The Server's settings for a command on its database: flags, else the Server's own
    FLAMENCO_SERVER_* variables and [server] in the config file, as `flamenco server` reads."""
    from flamenco.cli.base import load_settings

    return load_settings(ServerSettings, {"data_dir": data_dir, "database_url": database_url})
