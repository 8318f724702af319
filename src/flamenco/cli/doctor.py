"""`flamenco doctor`: what is wrong with this machine's part of the farm, one line a check.

Each check looks at the machine or asks a service and returns findings (core/doctor.py says
what a measurement means, prints it and decides the exit code). Nothing here changes
anything, and no token is sent anywhere: `/healthz` and `/api/v1/version` answer without one.
"""

from __future__ import annotations

import contextlib
import email.utils
import platform
import socket
import ssl
import sys
import tempfile
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TypeVar

import httpx
import psutil
import typer

from flamenco.cli.base import app, package_version
from flamenco.client import TlsFailure, transport_failure
from flamenco.config import (
    BadSetting,
    ClientSettings,
    DashboardSettings,
    ManagerSettings,
    ServerSettings,
    WorkerSettings,
    client_config_file,
    config_file,
    load,
    read_toml,
)
from flamenco.core.discovery import NoManagerChosen
from flamenco.core.doctor import (
    Finding,
    disk_finding,
    exit_code,
    fail,
    line,
    ok,
    port_finding,
    round_trip,
    skew_finding,
    warn,
)
from flamenco.netaddr import is_wildcard, local_host
from flamenco.tls import TrustError, client_context

TIMEOUT_S = 10.0
S = TypeVar("S")
SETTINGS = (ClientSettings, ServerSettings, ManagerSettings, WorkerSettings, DashboardSettings)
TITLES = {"Server": "Flamenco Server", "Manager": "Flamenco Manager"}


# ---- this machine --------------------------------------------------------------------------


def configuration() -> Iterator[Finding]:
    """Whether every setting (flags aside) can be read: a bad one is a ✗ here, and the checks
    that need it are left out rather than stopping the doctor."""
    for path in (config_file(), client_config_file()):
        try:
            read_toml(path)
        except tomllib.TOMLDecodeError as exc:
            yield fail(f"settings: {path} is not valid TOML ({exc})", "correct it")
            return
    bad = False
    for cls in SETTINGS:
        try:
            load(cls)
        except BadSetting as exc:
            bad = True
            yield fail(f"settings: {exc}", "correct or remove that setting")
    if not bad:
        where = config_file()
        yield ok(f"settings: {where}" if where.is_file() else f"settings: defaults (no {where})")


def settings(cls: type[S], flags: dict[str, Any] | None = None) -> S | None:
    """A component's settings; None when they cannot be read (configuration() said why)."""
    try:
        return load(cls, flags)
    except ValueError:  # BadSetting, or a settings file that is not TOML
        return None


def versions() -> Finding:
    return ok(
        f"Python {platform.python_version()} ({sys.executable}), Flamenco {package_version()}"
    )


def blenders(configured: list[str]) -> Iterator[Finding]:
    """Every Blender a Worker here would offer (the Worker's own search), with the GPUs that
    Cycles in it can render on (the Worker's own probe: a short Blender run each)."""
    from flamenco.worker.blender import BlenderNotFound, find_blenders
    from flamenco.worker.gpus import probe_cycles_devices

    try:
        installs = find_blenders(configured, remembered=False)  # each started: a real check
    except BlenderNotFound as exc:
        if configured:
            yield fail(f"Blender: {exc}", "fix --blender / FLAMENCO_WORKER_BLENDER")
        else:
            yield warn(f"Blender: {exc}", "only a Worker needs Blender")
        return
    for install in installs:
        # A throwaway user folder: the probe must leave nothing behind.
        with tempfile.TemporaryDirectory(prefix="flamenco-doctor-") as user_folder:
            devices = probe_cycles_devices(install, user_resources=Path(user_folder))
        gpus = ", ".join(f"{d.backend} {d.name}" for d in devices) or "none (renders on the CPU)"
        what = "the bpy module of" if install.kind == "bpy" else "the executable"
        yield ok(f"Blender {install.version}, {what} {install.where}; Cycles GPUs: {gpus}")


def default_data_dirs() -> list[Path]:
    """The data folders of the Server, Manager and Worker as configured here."""
    found: list[Any] = [settings(cls) for cls in (ServerSettings, ManagerSettings, WorkerSettings)]
    dirs = [s.data_dir for s in found if s is not None]
    return list(dict.fromkeys(dirs))


def disk(folder: Path) -> Finding:
    existing = folder.absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent  # not made yet: the disk it will be made on
    where = str(folder) if existing == folder.absolute() else f"{folder} (not made yet)"
    usage = psutil.disk_usage(str(existing))
    return disk_finding(where, usage.free, usage.total)


def _listens_on(conn: Any, port: int) -> bool:
    return bool(conn.laddr) and conn.laddr.port == port and conn.status == psutil.CONN_LISTEN


def listening_pids(port: int) -> list[int]:
    """The processes listening on `port`: from the system's table where this user may read it
    whole (Linux, Windows), else (macOS without root) from each process this user may see."""
    try:
        return [c.pid for c in psutil.net_connections("inet") if _listens_on(c, port) and c.pid]
    except psutil.AccessDenied:
        return own_listening_pids(port)


def own_listening_pids(port: int) -> list[int]:
    pids = []
    for proc in psutil.process_iter():
        with contextlib.suppress(psutil.Error, OSError):
            # psutil 6 renamed connections() to net_connections()
            connections = getattr(proc, "net_connections", None) or proc.connections
            if any(_listens_on(c, port) for c in connections("inet")):
                pids.append(proc.pid)
    return pids


def _holder(port: int) -> tuple[str | None, list[str]]:
    """The process listening on `port` and its command line, if psutil can tell."""
    with contextlib.suppress(psutil.Error, OSError):
        for pid in listening_pids(port):
            proc = psutil.Process(pid)
            with contextlib.suppress(psutil.Error):
                return f"{proc.name()} (pid {pid})", proc.cmdline()
            return f"pid {pid}", []
    return None, []


def port(component: str, host: str, number: int) -> Finding:
    """Whether something already listens where the component would (asked by connecting,
    which every platform answers alike), and what that is."""
    try:
        with socket.create_connection((local_host(host), number), timeout=2):
            in_use = True
    except OSError:
        in_use = False
    holder, cmdline = _holder(number) if in_use else (None, [])
    return port_finding(number, component, in_use, holder, cmdline)


def ports() -> Iterator[Finding]:
    for component, cls in (
        ("server", ServerSettings),
        ("manager", ManagerSettings),
        ("dashboard", DashboardSettings),
    ):
        configured: Any = settings(cls)
        if configured is not None:
            yield port(component, configured.host, configured.port)


# ---- the services ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict[str, Any]
    round_trip_s: float
    date: str | None
    skew_s: float | None  # the service's clock minus ours, from its Date header


def _get(http: httpx.Client, path: str) -> Answer:
    before = time.time()
    response = http.get(path)
    after = time.time()
    try:
        body = response.json()
    except ValueError:
        body = {}
    date = response.headers.get("date")
    skew = None
    with contextlib.suppress(TypeError, ValueError):
        # The header has whole seconds, cut down: the service's clock was up to 1 s later.
        stamp = email.utils.parsedate_to_datetime(date).timestamp() if date else None
        skew = None if stamp is None else stamp + 0.5 - (before + after) / 2
    return Answer(
        response.status_code, body if isinstance(body, dict) else {}, after - before, date, skew
    )


def _ask(url: str, verify: ssl.SSLContext | bool) -> tuple[Answer, Answer]:
    """/healthz, then /api/v1/version on the same connection (its round trip is the one
    shown: no connection or TLS set-up in it)."""
    with httpx.Client(base_url=url, verify=verify, timeout=TIMEOUT_S) as http:
        health = _get(http, "/healthz")
        return health, _get(http, "/api/v1/version")


def _unverified() -> ssl.SSLContext:
    # Only after the verified attempt failed, to say whether the service answers at all; the
    # doctor sends no token or anything else secret.
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def _trust_source(ca_bundle: str) -> str:
    return f"the CA bundle {ca_bundle}" if ca_bundle else "the system's trust store"


def service(what: str, url: str, ca_bundle: str, clock: bool) -> Iterator[Finding]:
    """Whether the service at `url` answers and can serve, with its round trip; whether its
    certificate is trusted; and with `clock`, how far its clock is from ours."""
    url = url.rstrip("/")
    parsed = httpx.URL(url)
    if parsed.scheme not in ("http", "https") or not parsed.host:
        yield fail(f"{what} {url!r}: not an http:// or https:// URL", f"pass --{what.lower()} URL")
        return
    host_port = f"{parsed.host}:{parsed.port or (443 if parsed.scheme == 'https' else 80)}"
    verify: ssl.SSLContext | bool = True
    tls: Finding | None = None
    if parsed.scheme == "https":
        try:
            verify = client_context(ca_bundle)
        except TrustError as exc:
            tls, verify = fail(f"TLS: {exc}", "fix --ca-bundle / FLAMENCO_CA_BUNDLE"), False
    elif is_wildcard(parsed.host) or parsed.host in ("127.0.0.1", "localhost", "::1"):
        tls = ok(f"TLS: not used by {what} {url} (plain HTTP on this machine)")
    else:
        tls = warn(
            f"TLS: {what} {url} is plain HTTP: tokens and files cross the network unencrypted",
            "serve HTTPS (--tls-cert, --tls-key; README, Encryption)",
        )
    try:
        health, version = _ask(url, verify if verify is not False else _unverified())
        if tls is None:
            tls = ok(f"TLS: the certificate of {host_port} is trusted ({_trust_source(ca_bundle)})")
    except httpx.TransportError as exc:
        failure = transport_failure(parsed, exc, f"{what} {url} cannot be reached ({exc}).")
        if not isinstance(failure, TlsFailure):
            yield fail(
                str(failure).rstrip("."),
                f"start it, or pass --{what.lower()} URL"
                + (f" / set FLAMENCO_{what.upper()}" if what == "Server" else ""),
            )
            return
        if parsed.scheme != "https":  # an http:// URL of an HTTPS service; the sentence says so
            yield fail(f"{what} {url}: {failure}", "")
            return
        tls = fail(f"TLS: {failure}", f"it was checked against {_trust_source(ca_bundle)}")
        try:
            health, version = _ask(url, _unverified())
        except httpx.TransportError as again:
            yield fail(f"{what} {url} cannot be reached ({again})", "see the TLS line")
            yield tls
            return
    yield _reached(what, url, health, version)
    yield tls
    if clock:
        if health.skew_s is None:
            yield warn(f"clock: {what} {url} sent no Date header", "is it a Flamenco service?")
        else:
            yield skew_finding(f"the {what} ({health.date})", health.skew_s)


def _reached(what: str, url: str, health: Answer, version: Answer) -> Finding:
    name = str(version.body.get("name", ""))
    theirs = str(version.body.get("version", ""))
    answered = f"{what} {url}: answers in {round_trip(version.round_trip_s)}"
    if version.status != 200 or (name and name != TITLES[what]):
        return fail(
            f"{what} {url}: not a Flamenco {what} (its /api/v1/version answered "
            f"{version.status}{f', {name}' if name else ''})",
            f"pass the {what}'s URL with --{what.lower()}",
        )
    if health.status == 503:
        detail = str(health.body.get("detail", "no reason given"))
        return fail(f"{answered} but cannot serve: {detail}", f"look at the {what}'s log")
    if health.status not in (200, 404):  # 404: from before /healthz; its version answered
        return fail(f"{answered} but /healthz said {health.status}", f"look at the {what}'s log")
    if theirs and theirs != package_version():
        return warn(
            f"{answered}; it runs Flamenco {theirs}, this machine {package_version()}",
            "run the same version on every machine",
        )
    return ok(f"{answered}, Flamenco {theirs or '?'}")


def manager_url(worker: WorkerSettings) -> tuple[str | None, Finding | None]:
    """The Manager to ask: --manager or the Worker's setting, else the one a Worker would find."""
    from flamenco.discovery import find_manager

    if worker.manager:
        return worker.manager, None
    try:
        return find_manager(worker, lambda _said: None), None
    except NoManagerChosen as exc:
        return None, warn(f"Manager: none given. {exc}", "only a Worker needs one")


# ---- the command -----------------------------------------------------------------------------


@app.command("doctor")
def doctor(
    server: Annotated[
        str | None, typer.Option("--server", help="Server URL [FLAMENCO_SERVER, client.toml].")
    ] = None,
    manager: Annotated[
        str | None,
        typer.Option(
            "--manager",
            help="Manager URL [FLAMENCO_WORKER_MANAGER; else the one a Worker would find].",
        ),
    ] = None,
    data_dir: Annotated[
        list[Path] | None,
        typer.Option(
            "--data-dir", help="Data folder whose disk to check; repeatable \\[those configured]."
        ),
    ] = None,
    no_blender: Annotated[
        bool, typer.Option("--no-blender", help="Do not look for Blender (seconds a Blender).")
    ] = False,
) -> None:
    """Check this machine's part of the farm, one line a check: ✓ fine, ! worth a look,
    ✗ wrong (with what to do). Exits 1 when anything is wrong."""
    with contextlib.suppress(AttributeError, ValueError):
        sys.stdout.reconfigure(errors="replace")  # type: ignore[union-attr]  # ✓ on any console
    findings: list[Finding] = []

    def report(*found: Finding) -> None:
        for finding in found:
            findings.append(finding)
            print(line(finding), flush=True)

    report(versions())
    report(*configuration())
    # A setting that cannot be read leaves out the checks that need it (its ✗ is above).
    client = settings(ClientSettings, {"server": server})
    if client is not None:
        report(*service("Server", client.server, client.ca_bundle, clock=True))
    worker = settings(WorkerSettings, {"manager": manager})
    if worker is not None:
        url, none_found = manager_url(worker)
        if url is None:
            assert none_found is not None
            report(none_found)
        else:
            report(*service("Manager", url, worker.ca_bundle, clock=False))
    for folder in data_dir or default_data_dirs():
        report(disk(folder))
    report(*ports())
    if worker is not None and not no_blender:
        report(*blenders(worker.blender))
    raise typer.Exit(exit_code(findings))
