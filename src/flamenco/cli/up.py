"""`flamenco up`: a whole farm on this machine, as separate processes, until Ctrl-C."""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import secrets
import socket
import ssl
import threading
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

import httpx

from flamenco.cli.console import err, secret_for_terminal
from flamenco.cli.server_admin import database_errors
from flamenco.cli.submit import SubmitRequest, submit_scene
from flamenco.cli.supervisor import Supervisor
from flamenco.cli.watch import watch_job
from flamenco.client import ApiError, SyncApi, Unreachable
from flamenco.config import (
    DEFAULT_DASHBOARD_PORT,
    DEFAULT_MANAGER_PORT,
    DEFAULT_SERVER_PORT,
    ServerSettings,
    UpSettings,
    write_client_config,
)
from flamenco.manager.join_secret import read_join_secret, secret_file, write_join_secret
from flamenco.netaddr import local_host, only_this_machine, public_host, service_url
from flamenco.procs import host_name, on_shutdown_signals_sync, private_folder
from flamenco.secret_files import write_secret_file
from flamenco.tls import ServiceTls, client_context, scheme, service_tls

log = logging.getLogger("flamenco.up")

ADMIN = "admin"
MANAGER_NAME = "local"
READY_TIMEOUT_S = 60.0
WATCH_INTERVAL_S = 0.2  # how soon a dead child is noticed


@dataclass
class FarmAddresses:
    """Where the farm listens, where its own processes reach it, and what other machines use."""

    bind_host: str
    public_host: str  # the host printed for other machines (and the Manager's --advertise)
    server_url: str  # on this machine: the Manager, the Dashboard, the client configuration
    manager_url: str
    dashboard_url: str
    public_server_url: str  # printed: for the add-on and clients on other machines
    public_manager_url: str  # printed: in the Worker command
    public_dashboard_url: str

    @property
    def only_this_machine(self) -> bool:
        return only_this_machine(self.bind_host)


def farm_addresses(reach: UpSettings, port_offset: int, scheme: str = "http") -> FarmAddresses:
    here, public = local_host(reach.host), public_host(reach.host, reach.advertise)
    ports = (DEFAULT_SERVER_PORT, DEFAULT_MANAGER_PORT, DEFAULT_DASHBOARD_PORT)
    local = [service_url(scheme, here, port + port_offset) for port in ports]
    printed = [service_url(scheme, public, port + port_offset) for port in ports]
    return FarmAddresses(reach.host, public, *local, *printed)


@dataclass(frozen=True)
class FarmTrust:
    """`up --tls-cert/--tls-key`: the pair its Server, Manager and Dashboard serve HTTPS with;
    `--ca-bundle`: what every client in the farm trusts (up's own, the client configuration;
    its children get it as FLAMENCO_CA_BUNDLE)."""

    tls: ServiceTls | None = None
    ca_bundle: str = ""  # an absolute path; empty: the system's trust store

    def service_args(self) -> list[str]:
        return (
            ["--tls-cert", str(self.tls.cert), "--tls-key", str(self.tls.key)] if self.tls else []
        )

    def context(self) -> ssl.SSLContext:
        return client_context(self.ca_bundle)


def farm_trust(reach: UpSettings) -> FarmTrust:
    """The checked pair and bundle; a wrong file raises TlsConfigError or TrustError."""
    tls = service_tls(reach.tls_cert, reach.tls_key)
    if tls is not None:  # the children may run elsewhere than here: absolute paths
        tls = ServiceTls(tls.cert.absolute(), tls.key.absolute())
    bundle = str(Path(reach.ca_bundle).expanduser().absolute()) if reach.ca_bundle else ""
    trust = FarmTrust(tls, bundle)
    trust.context()
    if bundle:  # the Manager, Dashboard and Workers it starts trust what it trusts
        os.environ["FLAMENCO_CA_BUNDLE"] = bundle
    return trust


@dataclass
class FarmSecrets:
    admin_password: str
    admin_token: str
    manager_token: str
    worker_secret: str


def bootstrap(data_dir: Path, database_url: str = "") -> FarmSecrets:
    """Create the admin, its API token and the local Manager once; reuse them afterwards.

    They are made in the database the farm's Server uses: `database_url`, else the SQLite
    file in its data folder."""
    path = data_dir / "farm.toml"
    if path.exists():
        with path.open("rb") as f:
            return FarmSecrets(**tomllib.load(f))
    from flamenco.server.services import build_services

    services = build_services(
        ServerSettings(data_dir=data_dir / "server", database_url=database_url)
    )
    try:
        password = secrets.token_urlsafe(12)
        if services.auth.user_exists(ADMIN):  # made before (`flamenco server init`): its own
            password = ""
        else:
            services.auth.create_user(ADMIN, password, admin=True)
        farm = FarmSecrets(
            admin_password=password,
            # Kept in farm.toml for as long as the farm: it does not expire (revocable).
            admin_token=services.auth.issue_token(ADMIN, label="flamenco up", expires=False),
            manager_token=services.auth.create_manager(MANAGER_NAME),
            worker_secret=secrets.token_urlsafe(24),
        )
    finally:
        services.close()
    save_farm_secrets(data_dir, farm)
    return farm


def save_farm_secrets(data_dir: Path, farm: FarmSecrets) -> Path:
    """Write farm.toml (0600): bootstrap, and `flamenco managers rotate-secret` for up's
    Manager (its worker_secret)."""
    text = "".join(f'{k} = "{v}"\n' for k, v in farm.__dict__.items())
    return write_secret_file(data_dir / "farm.toml", text)


def wait_ready(
    url: str, farm: Supervisor, label: str, verify: ssl.SSLContext | bool = True
) -> None:
    """Wait for a child's first answer; one that dies before it is a configuration error."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if not farm.child(label).running:
            raise RuntimeError(f"The {label} exited during start-up; see its log.")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/api/v1/version", timeout=2, verify=verify).status_code == 200:
                return
        time.sleep(0.2)
    raise RuntimeError(f"The {label} did not answer at {url} within {READY_TIMEOUT_S:.0f} s.")


def check_port_free(host: str, port: int) -> None:
    """Fail early, with the reason, when the port is taken or the address is not this machine's."""
    try:
        family, *_, address = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except OSError as exc:
        raise RuntimeError(f"Cannot listen on {host}: {exc.strerror or exc}.") from None
    with socket.socket(family) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers do
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise RuntimeError(
                    f"Port {port} is already in use; is another farm running? Try --port-offset."
                ) from None
            if exc.errno == errno.EADDRNOTAVAIL:
                raise RuntimeError(
                    f"Cannot listen on {host}: it is not an address of this machine."
                ) from None
            raise RuntimeError(f"Cannot listen on {host} port {port}: {exc.strerror}.") from None


def run_farm(
    data_dir: Path,
    workers: int,
    port_offset: int,
    demo: bool,
    reach: UpSettings | None = None,
    database_url: str = "",
) -> int:
    """`database_url`: the Server's database (empty: SQLite in its data folder), used by the
    bootstrap and the Server child alike."""
    reach = reach or UpSettings()
    try:
        for port in (DEFAULT_SERVER_PORT, DEFAULT_MANAGER_PORT, DEFAULT_DASHBOARD_PORT):
            check_port_free(reach.host, port + port_offset)
        trust = farm_trust(reach)
    except (RuntimeError, ValueError) as exc:
        err.print(f"Error: {exc}", style="red")
        return 1
    private_folder(data_dir)  # what a farm keeps is its own, also in a folder made before
    with database_errors():  # e.g. a newer database; a Manager made before farm.toml
        farm_secrets = bootstrap(data_dir, database_url)
    where = farm_addresses(reach, port_offset, scheme(trust.tls))
    server_url = where.server_url
    farm = Supervisor()
    stopping = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        stopping.set()

    on_shutdown_signals_sync(on_signal)
    try:
        database = {"FLAMENCO_SERVER_DATABASE_URL": database_url} if database_url else {}
        _start_all(farm, data_dir, farm_secrets, where, workers, port_offset, trust, database)
        config = write_client_config(server_url, farm_secrets.admin_token, trust.ca_bundle)
        _print_welcome(where, farm_secrets, config, data_dir, trust)
        if demo:  # beside the supervision, which must stay on this thread (see supervisor.py)
            args = (data_dir, server_url, farm_secrets.admin_token, trust.ca_bundle)
            threading.Thread(target=_render_demo, args=args, daemon=True).start()
        # Only Ctrl-C or SIGTERM ends the farm; a child that dies is started again.
        while not stopping.wait(WATCH_INTERVAL_S):
            farm.watch()
        return 0
    except (RuntimeError, ApiError, Unreachable) as exc:
        err.print(f"Error: {exc}", style="red")
        return 1
    finally:
        err.print("Stopping the farm…")
        farm.stop()


def _start_all(
    farm: Supervisor,
    data_dir: Path,
    s: FarmSecrets,
    where: FarmAddresses,
    workers: int,
    port_offset: int,
    trust: FarmTrust,
    server_env: dict[str, str],
) -> None:
    logs = data_dir / "logs"
    verify = trust.context()
    server_url, manager_url = where.server_url, where.manager_url
    farm.start(
        "Server",
        [
            "server",
            *trust.service_args(),
            "--host",
            where.bind_host,
            "--port",
            str(DEFAULT_SERVER_PORT + port_offset),
            "--data-dir",
            str(data_dir / "server"),
        ],
        server_env,  # its database URL (it may hold a password): never on the command line
        logs / "server.log",
    )
    wait_ready(server_url, farm, "Server", verify)
    # The Manager's join secret is its data folder's file (which `flamenco managers
    # rotate-secret` replaces, farm.toml with it), not a variable fixed for its lifetime.
    manager_dir = data_dir / "manager"
    if not secret_file(manager_dir).exists() or read_join_secret(manager_dir) != s.worker_secret:
        write_join_secret(manager_dir, s.worker_secret)
    farm.start(
        "Manager",
        [
            "manager",
            *trust.service_args(),
            "--server",
            server_url,
            "--name",
            MANAGER_NAME,
            "--host",
            where.bind_host,
            "--advertise",
            where.public_host,
            "--port",
            str(DEFAULT_MANAGER_PORT + port_offset),
            "--data-dir",
            str(data_dir / "manager"),
        ],
        {"FLAMENCO_MANAGER_TOKEN": s.manager_token},
        logs / "manager.log",
    )
    wait_ready(manager_url, farm, "Manager", verify)
    dashboard_port = DEFAULT_DASHBOARD_PORT + port_offset  # the Dashboard (issue 5)
    farm.start(
        "Dashboard",
        [
            "dashboard",
            *trust.service_args(),
            "--server",
            server_url,
            "--host",
            where.bind_host,
            "--port",
            str(dashboard_port),
        ],
        {},
        logs / "dashboard.log",
    )
    wait_ready(where.dashboard_url, farm, "Dashboard", verify)
    host = host_name()
    for i in range(1, workers + 1):
        farm.start(
            f"Worker {i}",
            [
                "worker",
                "--manager",
                manager_url,
                "--name",
                f"{host}-{i}",
                "--data-dir",
                str(data_dir / f"worker-{i}"),
            ],
            {"FLAMENCO_WORKER_SECRET": s.worker_secret},
            logs / f"worker-{i}.log",
        )


def _print_welcome(
    where: FarmAddresses, s: FarmSecrets, config: Path, data_dir: Path, trust: FarmTrust
) -> None:
    """Every URL and command printed is one line (see console.py), for other machines."""
    farm_toml = data_dir / "farm.toml"
    kept_password = secret_for_terminal(s.admin_password, f"admin_password in {farm_toml}")
    # An administrator made before the farm (`flamenco server init`) keeps its own password.
    password = f"password '{kept_password}'" if s.admin_password else "its password"
    worker_secret = secret_for_terminal(s.worker_secret, f"worker_secret in {farm_toml}")
    err.print(
        f"Flamenco farm running. Server {where.public_server_url}, "
        f"Manager {where.public_manager_url}",
        style="bold green",
    )
    err.print(
        f"Dashboard: {where.public_dashboard_url} (log in as '{ADMIN}' with {password}).",
        style="bold",
    )
    err.print(f"Blender add-on: set its Server URL to {where.public_server_url}")
    err.print(f"Client configuration written to {config}; try `flamenco jobs list`.")
    workers_where = "this machine" if where.only_this_machine else "other machines"
    err.print(
        f"Workers on {workers_where}: FLAMENCO_WORKER_SECRET={worker_secret} "
        f"flamenco worker --manager {where.public_manager_url}"
        + (f" --ca-bundle {trust.ca_bundle}" if trust.ca_bundle else "")
    )
    if trust.ca_bundle:
        err.print(
            f"Other machines trust this farm's certificate with a copy of {trust.ca_bundle}: "
            "--ca-bundle FILE, FLAMENCO_CA_BUNDLE, or the add-on's CA bundle preference."
        )
    if where.only_this_machine:
        err.print(
            f"Other machines cannot join: the farm listens on {where.bind_host} only; "
            "start it with --host 0.0.0.0 to let them."
        )
    err.print(f"Logs in {data_dir / 'logs'}. Press Ctrl-C to stop.")


def _render_demo(data_dir: Path, server_url: str, token: str, ca_bundle: str) -> None:
    """Submit the demo scene and wait for it; a failure is told and the farm runs on."""
    try:
        _submit_demo_and_wait(data_dir, server_url, token, ca_bundle)
    except Exception as exc:
        err.print(f"Error: the demo job did not finish: {exc}", style="red")


def _submit_demo_and_wait(data_dir: Path, server_url: str, token: str, ca_bundle: str) -> None:
    from flamenco.demo.scene import build_demo_scene
    from flamenco.worker.blender import find_blender

    scene = data_dir / "demo" / "flamenco-demo.blend"
    if not scene.exists():
        err.print("Building the demo scene…")
        build_demo_scene(find_blender(), scene, frames=24, user_resources=data_dir / "demo-user")
    api = SyncApi(server_url, token, ca_bundle=ca_bundle)
    job = submit_scene(api, SubmitRequest(scene, "1-24", chunk=4, name="Flamenco demo"))
    err.print(f"Demo job {job.id} submitted; rendering…")
    job = watch_job(api, job.id)
    err.print(f"Demo job {job.status}. Its frames are in {job.output_dir}", style="bold")
