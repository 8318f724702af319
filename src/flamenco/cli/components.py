"""The farm's long-running parts as commands: `flamenco server` (the `server` group's
callback), `manager`, `worker` and `dashboard`. Each reads its settings, checks its TLS files,
says where it is and serves until Ctrl-C or SIGTERM."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from flamenco.cli.base import (
    CaBundleOpt,
    CacheSizeOpt,
    KeepDaysOpt,
    ServerOpt,
    TlsCertOpt,
    TlsKeyOpt,
    app,
    checked_tls,
    friendly_errors,
    load_settings,
    serve_http,
    start_component,
)
from flamenco.cli.console import err, secret_for_terminal
from flamenco.cli.server_admin import database_errors, say_how_to_create_first_admin, server_app
from flamenco.config import ManagerSettings, ServerSettings, WorkerSettings, load
from flamenco.errors import SchemaError
from flamenco.netaddr import public_host, service_url
from flamenco.procs import on_shutdown_signals
from flamenco.tls import client_context, scheme


@server_app.callback()
def server(
    ctx: typer.Context,
    port: Annotated[int | None, typer.Option(help="Port [9999].")] = None,
    data_dir: Annotated[
        Path | None, typer.Option(help="Where jobs, frames and the DB live.")
    ] = None,
    host: Annotated[str | None, typer.Option(help="Interface to listen on [127.0.0.1].")] = None,
    database_url: Annotated[
        str | None, typer.Option(help="SQLAlchemy URL; default SQLite.")
    ] = None,
    tls_cert: TlsCertOpt = None,
    tls_key: TlsKeyOpt = None,
    keep_days: KeepDaysOpt = None,
) -> None:
    """Run the Server (its database upgraded first), or one of the commands below."""
    from flamenco.server.app import create_server_app
    from flamenco.server.services import build_services

    if ctx.invoked_subcommand is not None:
        return
    start_component("server")
    settings = load_settings(
        ServerSettings,
        {
            "port": port,
            "data_dir": data_dir,
            "host": host,
            "database_url": database_url,
            "tls_cert": tls_cert,
            "tls_key": tls_key,
            "keep_days": keep_days,
        },
    )
    tls = checked_tls(settings)
    with database_errors():  # e.g. newer than this code, or its upgrade failed
        services = build_services(settings)
    say_how_to_create_first_admin(services)
    url = service_url(scheme(tls), public_host(settings.host, ""), settings.port)
    err.print(f"Flamenco Server on {url} (data in {settings.data_dir})")
    server_app = create_server_app(services)
    serve_http(server_app, settings.host, settings.port, settings.header_timeout_s, tls)


@app.command()
def manager(
    server: ServerOpt = None,
    port: Annotated[int | None, typer.Option(help="Port [7777].")] = None,
    data_dir: Annotated[Path | None, typer.Option(help="Its SQLite, outbox and cache.")] = None,
    host: Annotated[str | None, typer.Option(help="Interface to listen on [127.0.0.1].")] = None,
    name: Annotated[str | None, typer.Option(help="The Manager's name on the Server.")] = None,
    token: Annotated[str | None, typer.Option(help="Token from `flamenco managers add`.")] = None,
    advertise: Annotated[
        str | None,
        typer.Option(
            help="Host name or address Workers reach it at [--host; for 0.0.0.0 this "
            "machine's primary address]."
        ),
    ] = None,
    announce: Annotated[
        bool | None,
        typer.Option(
            "--announce/--no-announce",
            help="Announce the site and URL on the network (DNS-SD) so that Workers find it "
            "without --manager; never on 127.0.0.1. \\[on]",
        ),
    ] = None,
    tls_cert: TlsCertOpt = None,
    tls_key: TlsKeyOpt = None,
    ca_bundle: CaBundleOpt = None,
    cache_size: CacheSizeOpt = None,
) -> None:
    """Run a Manager for the Workers of this network."""
    from flamenco.discovery import manager_url
    from flamenco.manager.app import build_manager, create_manager_app

    start_component("manager")
    settings = load_settings(
        ManagerSettings,
        {
            "server": server,
            "port": port,
            "data_dir": data_dir,
            "host": host,
            "name": name,
            "token": token,
            "advertise": advertise,
            "announce": announce,
            "tls_cert": tls_cert,
            "tls_key": tls_key,
            "ca_bundle": ca_bundle,
            "cache_size": cache_size,
        },
    )
    tls = checked_tls(settings)
    if not settings.token:
        err.print(
            "Error: the Manager needs its token: --token or "
            "FLAMENCO_MANAGER_TOKEN (from `flamenco managers add NAME`).",
            style="red",
        )
        raise typer.Exit(2)
    try:
        built = build_manager(settings)
    except SchemaError as exc:  # a store newer than this code, or its upgrade failed
        err.print(f"Error: {exc.message}", style="red")
        raise typer.Exit(1) from None
    url = manager_url(settings)  # the one it announces, too
    err.print(f"Flamenco Manager '{settings.name}' on {url}, Server {settings.server}")
    secret = secret_for_terminal(
        settings.secret,
        f"the join secret: FLAMENCO_MANAGER_SECRET or {settings.data_dir}/join-secret",
    )
    err.print(f"Workers join with: FLAMENCO_WORKER_SECRET={secret} flamenco worker --manager {url}")
    manager_app = create_manager_app(built)
    serve_http(
        manager_app,
        settings.host,
        settings.port,
        settings.header_timeout_s,
        tls,
        client_addresses=False,  # its Workers are known by their tokens, never by address
    )


@app.command()
@friendly_errors  # e.g. a Worker of the same name already online at that Manager
def worker(
    manager: Annotated[
        str | None,
        typer.Option(
            "--manager", help="Manager URL. \\[the one announced on the network (DNS-SD)]"
        ),
    ] = None,
    site: Annotated[
        str | None,
        typer.Option(help="Without --manager: join the announced Manager of this site."),
    ] = None,
    secret: Annotated[str | None, typer.Option(help="The Manager's join secret.")] = None,
    data_dir: Annotated[Path | None, typer.Option(help="Cache, outbox and frames.")] = None,
    name: Annotated[str | None, typer.Option(help="Name shown for this Worker.")] = None,
    blender: Annotated[
        list[str] | None,
        typer.Option(
            help="A Blender executable, or a Python 3.11 with the bpy module; repeatable: "
            "the Worker offers them all. \\[every `blender` on PATH and this Python's bpy]"
        ),
    ] = None,
    tags: Annotated[str | None, typer.Option(help="Comma-separated tags, e.g. gpu,fast.")] = None,
    gpu: Annotated[
        int | None,
        typer.Option(
            help="Use only this GPU (index); one Worker each, named <host>-gpuN by default, "
            "its data in <data-dir>/gpuN."
        ),
    ] = None,
    ca_bundle: CaBundleOpt = None,
    cache_size: CacheSizeOpt = None,
) -> None:
    """Run a Worker that renders what its Manager hands out."""
    from flamenco.worker.agent import WorkerAgent
    from flamenco.worker.blender import BlenderNotFound

    start_component("worker")
    settings = load_settings(
        WorkerSettings,
        {
            "manager": manager,
            "site": site,
            "secret": secret,
            "data_dir": data_dir,
            "name": name,
            "blender": blender or None,
            "tags": tags,
            "gpu": gpu,
            "ca_bundle": ca_bundle,
            "cache_size": cache_size,
        },
    )
    client_context(settings.ca_bundle)  # a CA bundle that cannot be used stops it here
    if not settings.manager:
        from flamenco.discovery import find_manager

        settings.manager = find_manager(settings, err.print)
    try:
        agent = WorkerAgent(settings)
    except (BlenderNotFound, SchemaError) as exc:  # SchemaError: its outbox is newer
        err.print(f"Error: {exc}", style="red")
        raise typer.Exit(1) from None
    blenders = ", ".join(f"{i.version} ({i.where})" for i in agent.installs)
    err.print(
        f"Flamenco Worker '{settings.name}' with Blender {blenders}, Manager {settings.manager}"
    )
    asyncio.run(_serve_until_signal(agent.serve))


async def _serve_until_signal(serve: Callable[[asyncio.Event], Any]) -> None:
    stop = asyncio.Event()
    on_shutdown_signals(asyncio.get_running_loop(), stop.set)
    await serve(stop)


@app.command()
def dashboard(
    server: Annotated[
        str | None, typer.Option("--server", help="Server URL [FLAMENCO_DASHBOARD_SERVER].")
    ] = None,
    port: Annotated[int | None, typer.Option(help="Port [8888].")] = None,
    host: Annotated[str | None, typer.Option(help="Interface to listen on [127.0.0.1].")] = None,
    tls_cert: TlsCertOpt = None,
    tls_key: TlsKeyOpt = None,
    ca_bundle: CaBundleOpt = None,
) -> None:
    """Run the Dashboard: the farm's web interface, in front of the Server's API."""
    from flamenco.config import DashboardSettings
    from flamenco.dashboard.app import create_dashboard_app

    start_component("dashboard")
    settings = load(
        DashboardSettings,
        {
            "server": server,
            "port": port,
            "host": host,
            "tls_cert": tls_cert,
            "tls_key": tls_key,
            "ca_bundle": ca_bundle,
        },
    )
    tls = checked_tls(settings)
    url = service_url(scheme(tls), public_host(settings.host, ""), settings.port)
    err.print(f"Flamenco Dashboard on {url}, Server {settings.server}")
    dashboard_app = create_dashboard_app(settings)
    serve_http(dashboard_app, settings.host, settings.port, settings.header_timeout_s, tls)
