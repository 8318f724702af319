"""The `flamenco` command: the entry point (`flamenco.cli.main:app`). Importing this module
registers every command on the app of `base.py`: the farm's parts (`components.py`), jobs
(`job_commands.py`), people and credentials (`accounts.py`) and the others below; here are
`up` and `addon build`."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from flamenco.cli import components, job_commands  # noqa: F401  (their commands, in help's order)
from flamenco.cli.base import (
    CaBundleOpt,
    CacheSizeOpt,
    JsonOpt,
    KeepDaysOpt,
    ServerOpt,
    TlsCertOpt,
    TlsKeyOpt,
    addon_app,
    app,
    client,
    friendly_errors,
    jobs_app,
    load_settings,
    managers_app,
    one_line_summaries,
    package_version,
    start_component,
    users_app,
)
from flamenco.cli.console import err
from flamenco.config import ServerSettings, load
from flamenco.core.sizes import parse_size

# What other modules import from here, as they did before the commands moved out of it.
__all__ = [
    "JsonOpt",
    "ServerOpt",
    "app",
    "client",
    "friendly_errors",
    "jobs_app",
    "load_settings",
    "managers_app",
    "package_version",
    "users_app",
]


@addon_app.command("build")
def addon_build(
    dest: Annotated[Path, typer.Argument(help="Folder for the zip, or a path ending in .zip.")],
) -> None:
    """Write the Blender add-on: an extension zip for Blender 4.2+ ("Install from Disk")."""
    from flamenco.addon.builder import AddonBuildError, build

    try:
        target = build(dest)
    except AddonBuildError as exc:
        err.print(f"Error: {exc}", style="red")
        raise typer.Exit(1) from None
    err.print(
        "Install it in Blender 4.2 or newer: Edit > Preferences > Get Extensions > "
        "Install from Disk."
    )
    print(target)


def _farm_disk_settings(cache_size: str | None, keep_days: float | None) -> dict[str, str]:
    """`up`'s disk flags as the FLAMENCO_* variables its Server, Manager and Workers read
    (a flag wins over the variable); a cache size that is not one stops it here."""
    env = {}
    if cache_size is not None:
        try:
            parse_size(cache_size)
        except ValueError as exc:
            err.print(f"Error: --cache-size: {exc}", style="red")
            raise typer.Exit(2) from None
        env["FLAMENCO_MANAGER_CACHE_SIZE"] = env["FLAMENCO_WORKER_CACHE_SIZE"] = cache_size
    if keep_days is not None:
        env["FLAMENCO_SERVER_KEEP_DAYS"] = str(keep_days)
    return env


@app.command()
def up(
    data_dir: Annotated[Path, typer.Option(help="Everything of this farm.")] = Path(
        "flamenco-data"
    ),
    workers: Annotated[int, typer.Option(help="Workers on this machine.")] = 1,
    port_offset: Annotated[int, typer.Option(help="Added to every default port.")] = 0,
    demo: Annotated[bool, typer.Option("--demo", help="Render the demo scene first.")] = False,
    host: Annotated[
        str | None,
        typer.Option(
            help="Interface the Server, Manager and Dashboard listen on; 0.0.0.0 lets other "
            "machines join [127.0.0.1]."
        ),
    ] = None,
    advertise: Annotated[
        str | None,
        typer.Option(
            help="Host name or address other machines reach this one at [--host; for "
            "0.0.0.0 this machine's primary address]."
        ),
    ] = None,
    cache_size: CacheSizeOpt = None,
    keep_days: KeepDaysOpt = None,
    tls_cert: TlsCertOpt = None,
    tls_key: TlsKeyOpt = None,
    ca_bundle: CaBundleOpt = None,
    database_url: Annotated[
        str | None,
        typer.Option(
            help="The Server's SQLAlchemy URL, e.g. postgresql+psycopg://user@host/flamenco "
            "[FLAMENCO_SERVER_DATABASE_URL; default SQLite in the data folder]."
        ),
    ] = None,
) -> None:
    """Run Server, Manager and Workers on this machine until Ctrl-C."""
    from flamenco.cli.up import run_farm
    from flamenco.config import UpSettings

    start_component("up")
    os.environ.update(_farm_disk_settings(cache_size, keep_days))
    reach = load(
        UpSettings,
        {
            "host": host,
            "advertise": advertise,
            "tls_cert": tls_cert,
            "tls_key": tls_key,
            "ca_bundle": ca_bundle,
        },
    )
    # The Server's database as `flamenco server` would resolve it (flag, its variable, TOML),
    # so that up's own bootstrap and its Server child use the same one.
    database = load_settings(ServerSettings, {"database_url": database_url}).database_url
    sys.exit(run_farm(data_dir.absolute(), workers, port_offset, demo, reach, database))


# `tokens`, `users`, `managers`: cli/accounts.py; registered by importing, after `up`.
# `metrics token`: cli/metrics.py. `doctor`: cli/doctor.py. `notify secret`: cli/notifications.py.
# `job-types`: cli/job_types.py.
from flamenco.cli import accounts, doctor, job_types, metrics, notifications  # noqa: E402, F401

one_line_summaries(app)  # once every command is registered
