"""What every `flamenco` command shares: the Typer app and its groups, the common options,
the client of the Server, one-sentence errors, settings loading and serving HTTP. The commands
themselves live in `components.py`, `job_commands.py`, `accounts.py` and the modules that
`main.py` imports."""

from __future__ import annotations

import functools
import inspect
import json
import os
from collections.abc import Callable, Iterable
from typing import Annotated, Any, TypeVar

import typer
from pydantic import BaseModel

from flamenco.cli.console import err
from flamenco.cli.server_admin import server_app
from flamenco.cli.service import service_app
from flamenco.client import ApiError, SyncApi, Unreachable
from flamenco.config import BadSetting, ClientSettings, load
from flamenco.logs import setup_logging
from flamenco.procs import keep_files_private
from flamenco.tls import ServiceTls, client_context, service_tls

app = typer.Typer(help="Flamenco: a network renderer for Blender.", no_args_is_help=True)
jobs_app = typer.Typer(help="Look at and fetch jobs.", no_args_is_help=True)
managers_app = typer.Typer(help="The Managers (sites) of the farm.", no_args_is_help=True)
addon_app = typer.Typer(help="The Blender add-on.", no_args_is_help=True)
users_app = typer.Typer(help="The people who use the farm.", no_args_is_help=True)
app.add_typer(jobs_app, name="jobs")  # cli/job_commands.py
app.add_typer(managers_app, name="managers")  # cli/accounts.py
app.add_typer(addon_app, name="addon")  # cli/main.py
app.add_typer(service_app, name="service")  # services: cli/service.py
app.add_typer(server_app, name="server")  # `server migrate|init`: cli/server_admin.py
app.add_typer(users_app, name="users")  # cli/accounts.py


def one_line_summaries(typer_app: typer.Typer) -> None:
    """Give each command the first paragraph of its help as its summary, on one line.

    A group lists its commands with their summaries; Typer's Rich help keeps the line breaks
    of a docstring there, which broke the list's sentences where the source wrapped them.
    """
    for info in typer_app.registered_commands:
        text = info.help or (info.callback.__doc__ if info.callback else None)
        if info.short_help is None and text:
            info.short_help = " ".join(inspect.cleandoc(text).split("\n\n")[0].split())
    for group in typer_app.registered_groups:
        if group.typer_instance is not None:
            one_line_summaries(group.typer_instance)


F = TypeVar("F", bound=Callable[..., Any])
S = TypeVar("S")
GRACEFUL_SHUTDOWN_S = 3  # long polls of Workers would otherwise hold a stop for 10 s

ServerOpt = Annotated[str | None, typer.Option("--server", help="Server URL [FLAMENCO_SERVER].")]
TlsCertOpt = Annotated[
    str | None,
    typer.Option("--tls-cert", help="PEM certificate (chain) to serve HTTPS with; with --tls-key."),
]
TlsKeyOpt = Annotated[
    str | None, typer.Option("--tls-key", help="The certificate's unencrypted PEM private key.")
]
CaBundleOpt = Annotated[
    str | None,
    typer.Option(
        "--ca-bundle",
        help="PEM file of the CA certificates to trust for HTTPS "
        "[FLAMENCO_CA_BUNDLE; the system's trust store].",
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]
CacheSizeOpt = Annotated[
    str | None,
    typer.Option(
        help="Bound of its cache of job files, e.g. 20GB, 500MB, 1.5TiB; least recently used "
        "files go first, never those of tasks it holds; 0 or unlimited: no bound. [20GB]"
    ),
]
KeepDaysOpt = Annotated[
    float | None,
    typer.Option(
        help="Delete finished jobs (completed, failed, canceled) untouched for this many days, "
        "with their frames and the files no other job uses. [0: keep everything]"
    ),
]


def package_version() -> str:
    """The installed package's version; the source tree's own where it is not installed."""
    import importlib.metadata

    from flamenco import __version__

    try:
        return importlib.metadata.version("flamenco")
    except importlib.metadata.PackageNotFoundError:
        return __version__


def _print_version(wanted: bool) -> None:
    if wanted:
        print(f"flamenco {package_version()}")
        raise typer.Exit()


VersionOpt = Annotated[
    bool,
    typer.Option(
        "--version", is_eager=True, callback=_print_version, help="Print the version and exit."
    ),
]


@app.command("version")
def version_command() -> None:
    """Print the version of Flamenco."""
    print(f"flamenco {package_version()}")


def friendly_errors(fn: F) -> F:
    """Print the service's one-sentence reason instead of a traceback, and exit non-zero."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ApiError as exc:
            err.print(f"Error ({exc.status}): {exc.message}", style="red")
        except (Unreachable, FileNotFoundError, ValueError) as exc:
            err.print(f"Error: {exc}", style="red")
        raise typer.Exit(1)

    return wrapper  # type: ignore[return-value]


def print_json_list(models: Iterable[BaseModel]) -> None:
    """A listing's --json: its models as one JSON document, a list, on stdout."""
    print(json.dumps([model.model_dump(mode="json") for model in models]))


# The cyclic garbage collector's thresholds while a service serves. Python's (700, 10, 10)
# collect the young objects every 700 allocations; a busy Manager or Server makes some 70,000 a
# second, nearly all freed by their reference counts within a request, but each collection came
# too soon for that and moved the survivors on to older generations, whose collections (5 ms and
# 30 ms each, over a Manager's held leases) took about a fifth of its CPU. Rarer young
# collections find those objects gone; cycles wait a little longer to be freed.
SERVING_GC_THRESHOLDS = (50_000, 20, 20)


def serve_http(
    app: Any,
    host: str,
    port: int,
    header_timeout_s: float,
    tls: ServiceTls | None = None,
    client_addresses: bool = True,
) -> None:
    """Run one of the farm's HTTP services until Ctrl-C or SIGTERM, in HTTPS when given `tls`;
    a connection that has not sent a request's headers within `header_timeout_s` is closed
    (`http_protocol.py`). `client_addresses`: the service reads its clients' addresses (login
    limits), so a proxy on this machine may name them in X-Forwarded-For; a service that reads
    none skips uvicorn's layer for that on every request (3 % of a busy Manager's CPU)."""
    import gc

    import uvicorn

    from flamenco.http_protocol import header_timeout_protocol

    # What importing FastAPI, pydantic and SQLAlchemy made lives as long as the process: out of
    # the collector's sight, so that a full collection no longer stalls requests for ~50 ms.
    gc.collect()
    gc.freeze()
    gc.set_threshold(*SERVING_GC_THRESHOLDS)
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level="warning",
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
        http=header_timeout_protocol(header_timeout_s),
        proxy_headers=client_addresses,
        ssl_certfile=tls.cert if tls else None,
        ssl_keyfile=tls.key if tls else None,
    )


def checked_tls(settings: Any) -> ServiceTls | None:
    """A service's HTTPS certificate and key, and the CA bundle it trusts as a client, checked
    before it starts: a wrong file stops the command with one sentence."""
    try:
        if getattr(settings, "ca_bundle", ""):
            client_context(settings.ca_bundle)
        return service_tls(settings.tls_cert, settings.tls_key)
    except ValueError as exc:
        err.print(f"Error: {exc}", style="red")
        raise typer.Exit(2) from None


def load_settings(cls: type[S], flags: dict[str, Any]) -> S:
    """A component's settings (config.load); one that cannot be used (a cache size that is
    not a size, say) stops the command with one sentence."""
    try:
        return load(cls, flags)
    except BadSetting as exc:
        err.print(f"Error: {exc}", style="red")
        raise typer.Exit(2) from None


def start_component(component: str) -> None:
    """What every long-running part of the farm does first: private files, then its logs."""
    keep_files_private()
    setup_logging(component)


def client(server: str | None) -> SyncApi:
    settings = load(ClientSettings, {"server": server})
    return SyncApi(settings.server, settings.token, ca_bundle=settings.ca_bundle)


@app.callback()
def _every_command(ca_bundle: CaBundleOpt = None, version: VersionOpt = False) -> None:
    """Flamenco: a network renderer for Blender."""
    if ca_bundle:  # `flamenco --ca-bundle FILE jobs list`: for every client of this command
        os.environ["FLAMENCO_CA_BUNDLE"] = ca_bundle
