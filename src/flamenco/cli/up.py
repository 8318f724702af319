"""`flamenco up`: a whole farm on this machine, as separate processes, until Ctrl-C."""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import signal
import socket
import threading
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

import httpx

from flamenco.cli.console import err, secret_for_terminal
from flamenco.cli.submit import SubmitRequest, submit_scene, wait_for_job
from flamenco.cli.supervisor import Supervisor
from flamenco.client import ApiError, SyncApi, Unreachable
from flamenco.config import (
    DEFAULT_DASHBOARD_PORT,
    DEFAULT_MANAGER_PORT,
    DEFAULT_SERVER_PORT,
    ServerSettings,
    write_client_config,
)
from flamenco.procs import private_folder

log = logging.getLogger("flamenco.up")

ADMIN = "admin"
MANAGER_NAME = "local"
READY_TIMEOUT_S = 60.0
WATCH_INTERVAL_S = 0.2  # how soon a dead child is noticed


@dataclass
class FarmSecrets:
    admin_password: str
    admin_token: str
    manager_token: str
    worker_secret: str


def bootstrap(data_dir: Path) -> FarmSecrets:
    """Create the admin, its API token and the local Manager once; reuse them afterwards."""
    path = data_dir / "farm.toml"
    if path.exists():
        with path.open("rb") as f:
            return FarmSecrets(**tomllib.load(f))
    from flamenco.server.services import build_services

    services = build_services(ServerSettings(data_dir=data_dir / "server"))
    try:
        password = secrets.token_urlsafe(12)
        if not services.auth.user_exists(ADMIN):
            services.auth.create_user(ADMIN, password, admin=True)
        farm = FarmSecrets(
            admin_password=password,
            admin_token=services.auth.issue_token(ADMIN, label="flamenco up"),
            manager_token=services.auth.create_manager(MANAGER_NAME),
            worker_secret=secrets.token_urlsafe(24),
        )
    finally:
        services.close()
    data_dir.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f'{k} = "{v}"\n' for k, v in farm.__dict__.items()))
    path.chmod(0o600)
    return farm


def wait_ready(url: str, farm: Supervisor, label: str) -> None:
    """Wait for a child's first answer; one that dies before it is a configuration error."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if not farm.child(label).running:
            raise RuntimeError(f"The {label} exited during start-up; see its log.")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/api/v1/version", timeout=2).status_code == 200:
                return
        time.sleep(0.2)
    raise RuntimeError(f"The {label} did not answer at {url} within {READY_TIMEOUT_S:.0f} s.")


def check_port_free(port: int) -> None:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers do
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            raise RuntimeError(
                f"Port {port} is already in use; is another farm running? Try --port-offset."
            ) from None


def run_farm(data_dir: Path, workers: int, port_offset: int, demo: bool) -> int:
    try:
        for port in (DEFAULT_SERVER_PORT, DEFAULT_MANAGER_PORT, DEFAULT_DASHBOARD_PORT):
            check_port_free(port + port_offset)
    except RuntimeError as exc:
        err.print(f"Error: {exc}", style="red")
        return 1
    private_folder(data_dir)  # what a farm keeps is its own, also in a folder made before
    farm_secrets = bootstrap(data_dir)
    server_url = f"http://127.0.0.1:{DEFAULT_SERVER_PORT + port_offset}"
    manager_url = f"http://127.0.0.1:{DEFAULT_MANAGER_PORT + port_offset}"
    farm = Supervisor()
    stopping = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        _start_all(farm, data_dir, farm_secrets, server_url, manager_url, workers, port_offset)
        config = write_client_config(server_url, farm_secrets.admin_token)
        _print_welcome(server_url, manager_url, port_offset, farm_secrets, config, data_dir)
        if demo:  # beside the supervision, which must stay on this thread (see supervisor.py)
            args = (data_dir, server_url, farm_secrets.admin_token)
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
    server_url: str,
    manager_url: str,
    workers: int,
    port_offset: int,
) -> None:
    logs = data_dir / "logs"
    farm.start(
        "Server",
        [
            "server",
            "--port",
            str(DEFAULT_SERVER_PORT + port_offset),
            "--data-dir",
            str(data_dir / "server"),
        ],
        {},
        logs / "server.log",
    )
    wait_ready(server_url, farm, "Server")
    farm.start(
        "Manager",
        [
            "manager",
            "--server",
            server_url,
            "--name",
            MANAGER_NAME,
            "--port",
            str(DEFAULT_MANAGER_PORT + port_offset),
            "--data-dir",
            str(data_dir / "manager"),
        ],
        {"FLAMENCO_MANAGER_TOKEN": s.manager_token, "FLAMENCO_MANAGER_SECRET": s.worker_secret},
        logs / "manager.log",
    )
    wait_ready(manager_url, farm, "Manager")
    dashboard_port = DEFAULT_DASHBOARD_PORT + port_offset  # the Dashboard (issue 5)
    farm.start(
        "Dashboard",
        ["dashboard", "--server", server_url, "--port", str(dashboard_port)],
        {},
        logs / "dashboard.log",
    )
    wait_ready(f"http://127.0.0.1:{dashboard_port}", farm, "Dashboard")
    host = os.uname().nodename
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
    server_url: str,
    manager_url: str,
    port_offset: int,
    s: FarmSecrets,
    config: Path,
    data_dir: Path,
) -> None:
    farm_toml = data_dir / "farm.toml"
    password = secret_for_terminal(s.admin_password, f"admin_password in {farm_toml}")
    worker_secret = secret_for_terminal(s.worker_secret, f"worker_secret in {farm_toml}")
    err.print(
        f"Flamenco farm running. Server {server_url}, Manager {manager_url}", style="bold green"
    )
    err.print(
        f"Dashboard: http://127.0.0.1:{DEFAULT_DASHBOARD_PORT + port_offset} "
        f"(log in as '{ADMIN}' with password '{password}').",
        style="bold",
    )
    err.print(f"Client configuration written to {config}; try `flamenco jobs list`.")
    err.print(
        f"Workers on other machines: FLAMENCO_WORKER_SECRET={worker_secret} "
        f"flamenco worker --manager {manager_url}"
    )
    err.print(f"Logs in {data_dir / 'logs'}. Press Ctrl-C to stop.")


def _render_demo(data_dir: Path, server_url: str, token: str) -> None:
    """Submit the demo scene and wait for it; a failure is told and the farm runs on."""
    try:
        _submit_demo_and_wait(data_dir, server_url, token)
    except Exception as exc:
        err.print(f"Error: the demo job did not finish: {exc}", style="red")


def _submit_demo_and_wait(data_dir: Path, server_url: str, token: str) -> None:
    from flamenco.demo.scene import build_demo_scene
    from flamenco.worker.blender import find_blender

    scene = data_dir / "demo" / "flamenco-demo.blend"
    if not scene.exists():
        err.print("Building the demo scene…")
        build_demo_scene(find_blender(), scene, frames=24, user_resources=data_dir / "demo-user")
    api = SyncApi(server_url, token)
    job = submit_scene(api, SubmitRequest(scene, "1-24", chunk=4, name="Flamenco demo"))
    err.print(f"Demo job {job.id} submitted; rendering…")
    job = wait_for_job(api, job.id)
    err.print(f"Demo job {job.status}. Its frames are in {job.output_dir}", style="bold")
