"""`flamenco doctor`, run as the real command against real processes: a TLS farm (Server and
Manager), a socket holding a port, a tiny HTTP server whose clock is a minute ahead, and the
bpy module of this Python."""

from __future__ import annotations

import email.utils
import importlib.metadata
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from farmkit import TestFarm, free_port
from flamenco.cli.doctor import listening_pids, own_listening_pids
from flamenco.tls import CA_HINT


@dataclass
class Doctor:
    code: int
    lines: list[str]
    stderr: str

    def the(self, start: str) -> str:
        """The one line that starts with `start`."""
        found = [ln for ln in self.lines if ln.startswith(start)]
        assert len(found) == 1, f"no single line starting {start!r} in:\n" + "\n".join(self.lines)
        return found[0]


def _ports_env(server: int, manager: int, dashboard: int) -> dict[str, str]:
    return {
        "FLAMENCO_SERVER_PORT": str(server),
        "FLAMENCO_MANAGER_PORT": str(manager),
        "FLAMENCO_DASHBOARD_PORT": str(dashboard),
    }


def doctor(farm: TestFarm | None, *args: str, env: dict[str, str] | None = None) -> Doctor:
    """The command, as a user runs it; without a farm, in an empty configuration folder."""
    if farm is not None:
        done = farm.cli("doctor", *args, env=env, timeout=240)
    else:
        done = subprocess.run(
            [sys.executable, "-m", "flamenco", "doctor", *args],
            env={**os.environ, **(env or {})},
            capture_output=True,
            text=True,
            timeout=240,
            check=False,
        )
    return Doctor(done.returncode, done.stdout.splitlines(), done.stderr)


def _nowhere_manager() -> list[str]:
    # Not the subject of the test; given, so that the doctor does not browse the network for one.
    return ["--manager", f"http://127.0.0.1:{free_port()}"]


def _port(url: str) -> int:
    port = httpx.URL(url).port
    assert port is not None
    return port


@pytest.fixture(scope="module")
def tls_farm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestFarm]:
    """A Server and a Manager serving HTTPS with a throwaway CA's certificate."""
    with TestFarm(tmp_path_factory.mktemp("doctor") / "farm", tls=True) as farm:
        farm.start_server()
        farm.start_manager()
        yield farm


def _farm_ports(farm: TestFarm, dashboard: int | None = None) -> dict[str, str]:
    # The farm's own ports as the configured ones: held by the farm's Server and Manager.
    return _ports_env(_port(farm.server_url), _port(farm.manager_url), dashboard or free_port())


def test_a_healthy_tls_farm_is_all_ticks(tls_farm: TestFarm, tmp_path: Path) -> None:
    dashboard_port = free_port()
    ran = doctor(
        tls_farm,
        "--manager",
        tls_farm.manager_url,
        "--data-dir",
        str(tmp_path),
        "--no-blender",
        env=_farm_ports(tls_farm, dashboard_port),
    )
    assert ran.code == 0, "\n".join(ran.lines) + ran.stderr
    assert all(ln.startswith("✓ ") for ln in ran.lines), ran.lines
    assert ran.the("✓ Python ").endswith(f"Flamenco {importlib.metadata.version('flamenco')}")
    assert ran.the(f"✓ Server {tls_farm.server_url}: answers in ")
    assert ran.the(f"✓ Manager {tls_farm.manager_url}: answers in ")
    assert tls_farm.tls is not None
    trusted = [ln for ln in ran.lines if ln.startswith("✓ TLS: the certificate of 127.0.0.1:")]
    assert len(trusted) == 2 and all(str(tls_farm.tls.ca_bundle) in ln for ln in trusted)
    assert ran.the("✓ clock: ")
    assert ran.the(f"✓ disk of {tmp_path}: ")
    server_port, manager_port = _port(tls_farm.server_url), _port(tls_farm.manager_url)
    assert ran.the(f"✓ port {server_port} (Server): in use by this machine's Server, ")
    assert ran.the(f"✓ port {manager_port} (Manager): in use by this machine's Manager, ")
    assert ran.the(f"✓ port {dashboard_port} (Dashboard): free")


def test_without_the_ca_bundle_the_tls_line_says_why(tls_farm: TestFarm, tmp_path: Path) -> None:
    env = {**_farm_ports(tls_farm), "FLAMENCO_CA_BUNDLE": ""}  # the system's store: not the CA
    ran = doctor(
        tls_farm,
        "--manager",
        tls_farm.manager_url,
        "--data-dir",
        str(tmp_path),
        "--no-blender",
        env=env,
    )
    assert ran.code == 1, ran.lines
    host_port = f"127.0.0.1:{_port(tls_farm.server_url)}"
    # The sentence every client prints (tls.untrusted_sentence), on one line.
    untrusted = ran.the(f"✗ TLS: The certificate of {host_port} is not trusted (")
    assert untrusted.endswith(f"; {CA_HINT} → it was checked against the system's trust store")
    # It still answers (asked without verifying, and without a token): only trust is wrong.
    assert ran.the(f"✓ Server {tls_farm.server_url}: answers in ")


def test_an_http_url_of_an_https_server_says_so(tls_farm: TestFarm, tmp_path: Path) -> None:
    plain = tls_farm.server_url.replace("https://", "http://")
    ran = doctor(
        tls_farm,
        "--server",
        plain,
        "--manager",
        tls_farm.manager_url,
        "--data-dir",
        str(tmp_path),
        "--no-blender",
        env=_farm_ports(tls_farm),
    )
    assert ran.code == 1
    host_port = plain.removeprefix("http://")
    assert ran.the(f"✗ Server {plain}: {host_port} speaks HTTPS, not plain HTTP; ").endswith(
        f"use https://{host_port} (nothing is retried in plain HTTP)."
    )


def test_an_unreachable_manager_fails(tls_farm: TestFarm, tmp_path: Path) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"
    ran = doctor(
        tls_farm,
        "--manager",
        nowhere,
        "--data-dir",
        str(tmp_path),
        "--no-blender",
        env=_farm_ports(tls_farm),
    )
    assert ran.code == 1
    assert ran.the(f"✗ Manager {nowhere} cannot be reached (").endswith(
        "→ start it, or pass --manager URL"
    )
    assert ran.the(f"✓ Server {tls_farm.server_url}: answers in ")


def test_a_port_held_by_another_process_is_named(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        env = {**_ports_env(free_port(), free_port(), port), "XDG_CONFIG_HOME": str(tmp_path)}
        ran = doctor(
            None, *_nowhere_manager(), "--data-dir", str(tmp_path), "--no-blender", env=env
        )
    assert ran.code == 1
    held = ran.the(f"✗ port {port} (Dashboard): already in use by ")
    assert f"(pid {os.getpid()})" in held  # this test's process, found by psutil
    assert held.endswith("(--port, FLAMENCO_DASHBOARD_PORT)")


def test_a_bad_setting_is_a_line_and_the_other_checks_go_on(tmp_path: Path) -> None:
    env = {**_ports_env(free_port(), free_port(), free_port()), "XDG_CONFIG_HOME": str(tmp_path)}
    env["FLAMENCO_SERVER_PORT"] = "nine"
    ran = doctor(None, *_nowhere_manager(), "--data-dir", str(tmp_path), "--no-blender", env=env)
    assert ran.code == 1
    assert ran.the("✗ settings: ") == (
        "✗ settings: FLAMENCO_SERVER_PORT: 'nine' is not a valid int "
        "→ correct or remove that setting"
    )
    assert ran.the(f"✓ disk of {tmp_path}: ")
    assert ran.the(f"✓ port {env['FLAMENCO_DASHBOARD_PORT']} (Dashboard): free")
    assert not [ln for ln in ran.lines if "(Server)" in ln]  # its port is the bad setting
    assert "Traceback" not in ran.stderr


def test_the_holder_of_a_port_is_found_without_the_systems_table() -> None:
    # What a Mac without root gets (psutil.net_connections is refused there): the listening
    # sockets of each process this user may see, which Linux answers the same way.
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        assert own_listening_pids(port) == [os.getpid()]
        assert listening_pids(port) == [os.getpid()]
    assert own_listening_pids(port) == []


class _AheadHandler(BaseHTTPRequestHandler):
    """Answers like a Flamenco Server, but with a clock a minute ahead."""

    def date_time_string(self, timestamp: float | None = None) -> str:
        return email.utils.formatdate(time.time() + 60, usegmt=True)

    def do_GET(self) -> None:  # http.server calls it by this name
        body = b'{"name": "Flamenco Server", "version": "0.1.0", "status": "ok"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_a_clock_a_minute_off_fails(tmp_path: Path) -> None:
    ahead = ThreadingHTTPServer(("127.0.0.1", 0), _AheadHandler)
    thread = threading.Thread(target=ahead.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{ahead.server_address[1]}"
        env = {
            **_ports_env(free_port(), free_port(), free_port()),
            "XDG_CONFIG_HOME": str(tmp_path),
        }
        ran = doctor(
            None,
            "--server",
            url,
            *_nowhere_manager(),
            "--data-dir",
            str(tmp_path),
            "--no-blender",
            env=env,
        )
    finally:
        ahead.shutdown()
        ahead.server_close()
        thread.join()
    assert ran.code == 1
    assert ran.the(f"✓ Server {url}: answers in ")
    skew = ran.the("✗ clock: ")
    assert skew.startswith(("✗ clock: 60 s behind the Server", "✗ clock: 59 s behind the Server"))
    assert "NTP" in skew


def test_the_blenders_line_lists_the_bpy_of_this_python(tmp_path: Path) -> None:
    env = {**_ports_env(free_port(), free_port(), free_port()), "XDG_CONFIG_HOME": str(tmp_path)}
    ran = doctor(None, *_nowhere_manager(), "--data-dir", str(tmp_path), env=env)
    bpy = ran.the(f"✓ Blender {importlib.metadata.version('bpy')}, the bpy module of ")
    assert f"the bpy module of {sys.executable}; Cycles GPUs: " in bpy
    if shutil.which("nvidia-smi") is None:  # no GPU here (none is mocked): Cycles has the CPU
        assert bpy.endswith("Cycles GPUs: none (renders on the CPU)")
    else:  # a machine with an NVIDIA GPU: Cycles lists it through CUDA (and OptiX)
        assert "CUDA " in bpy
