"""The `flamenco` command: one sub-command per component, plus the client commands."""

from __future__ import annotations

import asyncio
import functools
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.table import Table

from flamenco import wire
from flamenco.cli.console import err, out, secret_for_terminal
from flamenco.cli.server_admin import (
    database_errors,
    say_how_to_create_first_admin,
    server_app,
)
from flamenco.cli.service import service_app
from flamenco.client import ApiError, SyncApi, Unreachable, api_path
from flamenco.config import (
    BadSetting,
    ClientSettings,
    ManagerSettings,
    ServerSettings,
    WorkerSettings,
    load,
)
from flamenco.core.compiler import output_format_label
from flamenco.core.sizes import parse_size
from flamenco.errors import SchemaError
from flamenco.logs import setup_logging
from flamenco.netaddr import public_host, service_url
from flamenco.procs import keep_files_private, on_shutdown_signals
from flamenco.tls import ServiceTls, client_context, scheme, service_tls

app = typer.Typer(help="Flamenco: a network renderer for Blender.", no_args_is_help=True)
jobs_app = typer.Typer(help="Look at and fetch jobs.", no_args_is_help=True)
managers_app = typer.Typer(help="The Managers (sites) of the farm.", no_args_is_help=True)
app.add_typer(jobs_app, name="jobs")
app.add_typer(managers_app, name="managers")
addon_app = typer.Typer(help="The Blender add-on.", no_args_is_help=True)  # add-on
app.add_typer(addon_app, name="addon")  # add-on
app.add_typer(service_app, name="service")  # services: cli/service.py
app.add_typer(server_app, name="server")  # `server migrate|init`: cli/server_admin.py

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


def serve_http(
    app: Any, host: str, port: int, header_timeout_s: float, tls: ServiceTls | None = None
) -> None:
    """Run one of the farm's HTTP services until Ctrl-C or SIGTERM, in HTTPS when given `tls`;
    a connection that has not sent a request's headers within `header_timeout_s` is closed
    (`http_protocol.py`)."""
    import gc

    import uvicorn

    from flamenco.http_protocol import header_timeout_protocol

    # What importing FastAPI, pydantic and SQLAlchemy made lives as long as the process: out of
    # the collector's sight, so that a full collection no longer stalls requests for ~50 ms.
    gc.collect()
    gc.freeze()
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level="warning",
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
        http=header_timeout_protocol(header_timeout_s),
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


# ---- components ------------------------------------------------------------------------------


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
            "without --manager; never on 127.0.0.1. [on]",
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
    serve_http(manager_app, settings.host, settings.port, settings.header_timeout_s, tls)


@app.command()
@friendly_errors  # e.g. a Worker of the same name already online at that Manager
def worker(
    manager: Annotated[
        str | None,
        typer.Option("--manager", help="Manager URL. [the one announced on the network (DNS-SD)]"),
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
            "the Worker offers them all. [every `blender` on PATH and this Python's bpy]"
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


# ---- client commands ---------------------------------------------------------------------------


@app.command()
@friendly_errors
def submit(
    scene: Annotated[Path, typer.Argument(help="The .blend file to render.")],
    frames: Annotated[str, typer.Option(help="Frames, e.g. 1-10,15,20-24.")],
    chunk: Annotated[
        str,
        typer.Option(
            help="Frames per task, or 'auto': tasks re-sized as frames render so that each "
            "takes about --task-seconds.",
        ),
    ] = "1",
    task_seconds: Annotated[
        float | None,
        typer.Option(help="With --chunk auto, the seconds each task should take [60]."),
    ] = None,
    name: Annotated[str | None, typer.Option(help="Job name [the file's name].")] = None,
    priority: Annotated[int, typer.Option(help="0-100, higher first.")] = 50,
    site: Annotated[
        list[str] | None, typer.Option("--site", help="Render only on this Manager; repeatable.")
    ] = None,
    allow_missing: Annotated[
        bool, typer.Option("--allow-missing", help="Submit even if dependencies are missing.")
    ] = False,
    device: Annotated[
        str, typer.Option(help="CPU, GPU (any), or CUDA, OPTIX, HIP, ONEAPI, METAL.")
    ] = "CPU",
    tag: Annotated[str | None, typer.Option(help="Only Workers with this tag.")] = None,
    min_blender: Annotated[str | None, typer.Option(help="Minimum Blender version.")] = None,
    output_format: Annotated[
        str | None,
        typer.Option(
            help="Blender's file format name, e.g. OPEN_EXR_MULTILAYER, OPEN_EXR, PNG, JPEG, "
            "TIFF [the scene's own output settings]."
        ),
    ] = None,
    preview_video: Annotated[
        bool,
        typer.Option("--preview-video", help="Also make preview.mp4 of all frames at the end."),
    ] = False,
    no_scripts: Annotated[
        bool,
        typer.Option(
            "--no-scripts",
            help="Do not run the file's own Python (drivers, registered text blocks) "
            "[they run, as on a workstation that trusts the file].",
        ),
    ] = False,
    tiles: Annotated[
        int | None,
        typer.Option(
            help="Render the one frame of --frames as this many regions on different "
            "Workers, joined by the Server (README: One frame over many machines).",
        ),
    ] = None,
    check_blank: Annotated[
        bool,
        typer.Option(
            "--check-blank",
            help="Fail a frame whose pixels all have the same value (e.g. a black render).",
        ),
    ] = False,
    persistent_data: Annotated[
        bool,
        typer.Option(
            "--persistent-data/--no-persistent-data",
            help="Let Cycles keep BVH and images between a job's frames on a Worker.",
        ),
    ] = True,
    wait: Annotated[
        bool,
        typer.Option(
            "--wait",
            help="Follow the job with a progress bar until it ends; exit 0 completed, "
            "1 failed, 2 canceled.",
        ),
    ] = False,
    notify: Annotated[
        str | None,
        typer.Option(
            help="An http(s) URL the Server POSTs a signed JSON document to when the job "
            "completes, fails or is canceled (README: Notifications).",
        ),
    ] = None,
    after: Annotated[
        list[str] | None,
        typer.Option(
            "--after",
            metavar="JOB[,JOB…]",
            help="Start only once these jobs have completed; repeatable or a comma list "
            "(README: Jobs that wait for jobs).",
        ),
    ] = None,
    server: ServerOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Upload a scene and create a render job; prints the job id."""
    from flamenco.cli.submit import SubmitRequest, parse_after, parse_chunk, submit_scene
    from flamenco.cli.watch import exit_code_of, watch_job

    api = client(server)
    settings: dict[str, Any] = {"render_device": device.upper()}
    if output_format:
        settings["output_format"] = output_format
    if tag:
        settings["worker_tag"] = tag
    if min_blender:
        settings["min_blender_version"] = min_blender
    if preview_video:
        settings["preview_video"] = True
    if not persistent_data:
        settings["persistent_data"] = False
    if no_scripts:
        settings["scripts"] = False
    if check_blank:
        settings["check_blank"] = True
    if tiles is not None:
        settings["tiles"] = tiles
    if task_seconds is not None:
        settings["task_seconds"] = task_seconds
    request = SubmitRequest(
        scene,
        frames,
        parse_chunk(chunk),
        name,
        priority,
        site or [],
        allow_missing,
        settings,
        notify,
        parse_after(after or []),
    )
    job = submit_scene(api, request)
    err.print(f"Submitted job {job.id} ({job.name}), {job.tasks_total} tasks.")
    if wait:
        job = watch_job(api, job.id)
        err.print(f"Job {job.id} {job.status}; frames in {job.output_dir}")
    if as_json:
        print(job.model_dump_json())
    else:
        print(job.id)
    if wait and exit_code_of(job):
        raise typer.Exit(exit_code_of(job))


@jobs_app.command("list")
@friendly_errors
def jobs_list(server: ServerOpt = None, as_json: JsonOpt = False) -> None:
    """All jobs, newest first."""
    jobs = client(server).call("GET", "/api/v1/jobs", wire.JobList).root
    if as_json:
        print(json.dumps([j.model_dump(mode="json") for j in jobs]))
        return
    table = Table("name", "status", "progress", "frames", "priority", "submitter")
    table.add_column("id", no_wrap=True)  # ids are typed back into other commands
    for j in jobs:
        table.add_row(
            j.name,
            str(j.status),
            f"{j.progress:.0%}",
            f"{j.frames_done}/{j.frames_total}",
            str(j.priority),
            j.submitter,
            j.id,
        )
    out.print(table)


@jobs_app.command("watch")
@friendly_errors
def jobs_watch(
    job_id: Annotated[str, typer.Argument(metavar="JOB")],
    server: ServerOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Follow a job with a progress bar until it ends; exit 0 completed, 1 failed, 2 canceled."""
    from flamenco.cli.watch import exit_code_of, watch_job

    job = watch_job(client(server), job_id)
    if as_json:
        print(job.model_dump_json())
    else:
        out.print(
            f"{job.name} ({job.id}) {job.status}, {job.frames_done}/{job.frames_total} frames"
        )
    if exit_code_of(job):
        raise typer.Exit(exit_code_of(job))


@jobs_app.command("show")
@friendly_errors
def jobs_show(
    job_id: Annotated[str, typer.Argument(metavar="JOB")],
    server: ServerOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """One job and its tasks."""
    api = client(server)
    job = api.call("GET", api_path("jobs", job_id), wire.Job)
    tasks = api.call("GET", api_path("jobs", job_id, "tasks"), wire.TaskList).root
    if as_json:
        doc = job.model_dump(mode="json") | {"tasks": [t.model_dump(mode="json") for t in tasks]}
        print(json.dumps(doc))
        return
    out.print(
        f"{job.name} ({job.id}) {job.status}, {job.progress:.0%}, "
        f"{job.frames_done}/{job.frames_total} frames, priority {job.priority}",
        style="bold",
    )
    out.print(f"Output folder: {job.output_dir}")
    if job.after:
        out.print(f"Starts after: {', '.join(job.after)}")
    frames = api.call("GET", api_path("jobs", job_id, "frames"), wire.FrameList).root
    out.print(f"Format: {output_format_label(job.settings, (f.filename for f in frames))}")
    if job.last_error:
        out.print(f"Last error: {job.last_error}", style="red")
    if job.waiting_reason:
        out.print(job.waiting_reason, style="yellow")
    if job.blocklist:
        out.print(f"Kept off this job after repeated failures: {', '.join(job.blocklist)}")
    table = Table("name", "status", "progress", "worker", "activity")
    table.add_column("task", no_wrap=True)
    for t in tasks:
        table.add_row(t.name, str(t.status), f"{t.progress:.0%}", t.worker or "", t.activity, t.id)
    out.print(table)


@jobs_app.command("download")
@friendly_errors
def jobs_download(
    job_id: Annotated[str, typer.Argument(metavar="JOB")],
    dest: Annotated[Path, typer.Argument(help="Folder to write the frames into.")],
    server: ServerOpt = None,
) -> None:
    """Write a job's rendered frames, and its other files such as preview.mp4, into DEST."""
    from flamenco.cli.download import download_artifacts, download_frames

    api = client(server)
    written = download_frames(api, job_id, dest)
    err.print(f"{len(written)} frames written to {dest}")
    others = download_artifacts(api, job_id, dest)
    if others:
        err.print(f"Also written: {', '.join(p.name for p in others)}")


def _act(job_ids: list[str], action: str, server: str | None) -> None:
    api = client(server)
    for job_id in job_ids:
        job = api.call("POST", api_path("jobs", job_id, action), wire.Job)
        err.print(f"Job {job.id} is now {job.status}.")


JobIds = Annotated[list[str], typer.Argument(metavar="JOB...", help="One or more job ids.")]


@jobs_app.command("pause")
@friendly_errors
def jobs_pause(job_ids: JobIds, server: ServerOpt = None) -> None:
    """Pause jobs: running renders stop; what was rendered stays."""
    _act(job_ids, "pause", server)


@jobs_app.command("resume")
@friendly_errors
def jobs_resume(job_ids: JobIds, server: ServerOpt = None) -> None:
    """Resume paused jobs: the remaining frames are rendered."""
    _act(job_ids, "resume", server)


@jobs_app.command("cancel")
@friendly_errors
def jobs_cancel(job_ids: JobIds, server: ServerOpt = None) -> None:
    """Cancel jobs: running renders stop within seconds."""
    _act(job_ids, "cancel", server)


@jobs_app.command("requeue")
@friendly_errors
def jobs_requeue(
    job_ids: JobIds,
    failed: Annotated[
        bool, typer.Option("--failed", help="Only failed or canceled tasks.")
    ] = False,
    server: ServerOpt = None,
) -> None:
    """Render jobs again: everything, or only what failed. Every Worker may try again."""
    _act(job_ids, "requeue-failed" if failed else "requeue", server)


@jobs_app.command("unblock")
@friendly_errors
def jobs_unblock(
    job_id: Annotated[str, typer.Argument(metavar="JOB")],
    worker: Annotated[
        str | None, typer.Argument(metavar="[WORKER]", help="Only this Worker [all].")
    ] = None,
    server: ServerOpt = None,
) -> None:
    """Let Workers kept off a job after repeated failures take its tasks again."""
    request = wire.JobUnblock(worker=worker)
    job = client(server).call("POST", api_path("jobs", job_id, "unblock"), wire.Job, request)
    who = f"Worker {worker} may" if worker else "Every Worker may"
    kept_off = ", ".join(job.blocklist) or "none"
    err.print(f"{who} run job {job.id} again; kept off it now: {kept_off}.")


@jobs_app.command("delete")
@friendly_errors
def jobs_delete(job_ids: JobIds, server: ServerOpt = None) -> None:
    """Delete jobs with their frames and the files no other job uses."""
    api = client(server)
    for job_id in job_ids:
        api.request("DELETE", api_path("jobs", job_id))
        err.print(f"Job {job_id} deleted.")


@jobs_app.command("priority")
@friendly_errors
def jobs_priority(
    job_id: Annotated[str, typer.Argument(metavar="JOB")],
    priority: Annotated[int, typer.Argument(help="0-100, higher first.")],
    server: ServerOpt = None,
) -> None:
    """Change a job's priority."""
    change = wire.PriorityChange(priority=priority)
    job = client(server).call("PUT", api_path("jobs", job_id, "priority"), wire.Job, change)
    err.print(f"Job {job.id} now has priority {job.priority}.")


@managers_app.command("add")
@friendly_errors
def managers_add(name: str, server: ServerOpt = None) -> None:
    """Register a Manager on the Server and print its token."""
    issued = client(server).call(
        "POST", "/api/v1/managers", wire.TokenIssued, wire.ManagerCreate(name=name)
    )
    err.print(
        f"Manager '{name}' added. Start it with: flamenco manager --name {name} "
        "--token TOKEN --server URL"
    )
    print(issued.token)


@managers_app.command("list")
@friendly_errors
def managers_list(server: ServerOpt = None, as_json: JsonOpt = False) -> None:
    """Every Manager (site), whether it is online, and what its Workers do."""
    managers = client(server).call("GET", "/api/v1/managers", wire.ManagerList).root
    if as_json:
        print(json.dumps([m.model_dump(mode="json") for m in managers]))
        return
    table = Table("site", "state", "address", "workers")
    for m in managers:
        workers = "\n".join(
            f"{w.name}: {w.status}" + (f", task {w.task_id}" if w.task_id else "")
            for w in m.workers
        )
        table.add_row(m.name, m.status, m.address, workers or "none")
    out.print(table)


# ---- Blender add-on (owned by the add-on work: src/flamenco/addon) -----------------------------


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


# ---- end of Blender add-on ---------------------------------------------------------------------


# ---- Dashboard and users (owned by the Dashboard work: src/flamenco/dashboard) -----------------

users_app = typer.Typer(help="The people who use the farm.", no_args_is_help=True)
app.add_typer(users_app, name="users")


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


@users_app.command("add")
@friendly_errors
def users_add(
    name: Annotated[str, typer.Argument(help="The new user's login name.")],
    admin: Annotated[
        bool, typer.Option("--admin", help="May manage users, sites, Workers.")
    ] = False,
    password: Annotated[
        str | None, typer.Option(help="The password; asked for when not given.")
    ] = None,
    server: ServerOpt = None,
) -> None:
    """Add a user who can log in to the Dashboard and use the API (administrators only)."""
    if password is None:
        password = typer.prompt(f"Password for {name}", hide_input=True, confirmation_prompt=True)
    if len(password) < 8:
        raise ValueError("The password needs at least 8 characters.")
    body = {"name": name, "password": password, "admin": admin}
    client(server).request("POST", "/api/v1/users", json=body)
    err.print(f"User '{name}' added{' as an administrator' if admin else ''}.")


# ---- end of Dashboard and users ----------------------------------------------------------------


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


# `tokens`, `users passwd|remove`, `managers revoke|rotate|rotate-secret`: registered by importing.
# `metrics token`: cli/metrics.py. `doctor`: cli/doctor.py. `notify secret`: cli/notifications.py.
from flamenco.cli import accounts, doctor, metrics, notifications  # noqa: E402, F401
