"""`flamenco notify secret [--rotate]`: the key the Server signs notifications with, for
administrators to give to the receivers that check them (README, "Notifications")."""

from __future__ import annotations

from typing import Annotated

import typer

from flamenco import wire
from flamenco.cli.base import ServerOpt, app, client, friendly_errors
from flamenco.cli.console import err

notify_app = typer.Typer(help="Notifications of jobs' ends.", no_args_is_help=True)
app.add_typer(notify_app, name="notify")


@notify_app.command("secret")
@friendly_errors
def notify_secret(
    rotate: Annotated[
        bool, typer.Option("--rotate", help="Replace it; the old one signs nothing more.")
    ] = False,
    server: ServerOpt = None,
) -> None:
    """Print the notification signing secret (administrators); made at first use."""
    method = "POST" if rotate else "GET"
    secret = client(server).call(method, "/api/v1/notify/secret", wire.NotifySecret)
    made = secret.created.strftime("%Y-%m-%d %H:%M UTC")
    err.print(f"Notification secret {'made now' if rotate else f'of {made}'}; keep it private.")
    print(secret.secret)
