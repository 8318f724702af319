"""`flamenco metrics token`: a read-only token for Prometheus, made by an administrator."""

from __future__ import annotations

import typer

from flamenco import wire
from flamenco.cli.base import ServerOpt, app, client, friendly_errors
from flamenco.cli.console import err

metrics_app = typer.Typer(help="Prometheus metrics of the farm.", no_args_is_help=True)
app.add_typer(metrics_app, name="metrics")


@metrics_app.command("token")
@friendly_errors
def metrics_token(server: ServerOpt = None) -> None:
    """Make and print a read-only metrics token (administrators): the Server's and every
    Manager's /metrics accept it, nothing else does."""
    issued = client(server).call("POST", "/api/v1/metrics/tokens", wire.TokenIssued)
    err.print(
        "Metrics token made; put it in Prometheus' bearer token file (see docs/monitoring). "
        "Revoke it with `flamenco tokens revoke ID`."
    )
    print(issued.token)
