"""TLS on every link, with a throwaway CA (trustme): real processes on real sockets.

CLI -> Server, Manager -> Server, Worker -> Manager, Dashboard -> Server and browser ->
Dashboard all speak HTTPS and verify the other side; a client without the CA stops with one
sentence naming the host and the reason, and never falls back to plain HTTP.
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import trustme

from farmkit import DEMO_FRAMES, TestFarm, free_port, make_tls, wait_until
from flamenco import wire
from flamenco.client import SyncApi
from flamenco.tls import TlsConfigError, TrustError, client_context, service_tls
from test_service_cli import Machine, machine  # the service tests' stand-in machine
from upkit import UpFarm

__all__ = ["machine"]  # a fixture, used by name
NO_CA = {"FLAMENCO_CA_BUNDLE": ""}  # empty: the system's trust store, which lacks the test CA
HTTP_METHODS = (b"GET ", b"POST ", b"PUT ", b"HEAD ", b"DELETE ", b"PATCH ", b"OPTIONS ")


class RecordingProxy:
    """A TCP relay to `target` that keeps the first bytes each connection sent: shows what a
    client put on the wire (a TLS handshake starts with record type 0x16, HTTP with a verb)."""

    def __init__(self, target: int, host: str = "127.0.0.1") -> None:
        self.target = target
        self.listener = socket.create_server((host, 0))
        self.url_host = f"{host}:{self.listener.getsockname()[1]}"
        self.first_bytes: list[bytes] = []
        self.sockets: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # closed
            upstream = socket.create_connection(("127.0.0.1", self.target))
            self.sockets += [client, upstream]
            first = [True]
            threading.Thread(target=self._pipe, args=(client, upstream, first), daemon=True).start()
            threading.Thread(
                target=self._pipe, args=(upstream, client, [False]), daemon=True
            ).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, first: list[bool]) -> None:
        try:
            while data := src.recv(65536):
                if first[0]:
                    self.first_bytes.append(data[:8])
                    first[0] = False
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.listener.close()
        for s in self.sockets:
            s.close()


@pytest.fixture
def tls_farm(tmp_path: Path) -> Iterator[TestFarm]:
    with TestFarm(tmp_path, tls=True) as farm:
        yield farm


def untrusted(host_port: str) -> re.Pattern[str]:
    return re.compile(
        rf"The certificate of {re.escape(host_port)} is not trusted \([^)]+\); "
        r"pass --ca-bundle FILE or FLAMENCO_CA_BUNDLE\."
    )


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


# ---- the checks before a service starts --------------------------------------------------------


def test_a_certificate_and_key_are_checked_before_serving(tmp_path: Path) -> None:
    good = make_tls(tmp_path / "good")
    other = make_tls(tmp_path / "other")
    (tmp_path / "unreadable.pem").write_text("x")
    (tmp_path / "unreadable.pem").chmod(0)
    cases = [
        (good.cert, None, "--tls-cert and --tls-key go together"),
        (None, good.key, "--tls-cert and --tls-key go together"),
        (tmp_path / "missing.pem", good.key, "cannot be read (no such file or directory)"),
        (good.cert, other.key, f"The TLS key {other.key} does not match the certificate"),
        (good.ca_bundle, good.ca_bundle, "are not a PEM certificate and its private key"),
    ]
    for cert, key, sentence in cases:
        with pytest.raises(TlsConfigError, match=re.escape(sentence)):
            service_tls(cert, key)
    assert service_tls(None, None) is None
    assert service_tls(good.cert, good.key) is not None

    for bundle, sentence in [
        (tmp_path / "missing.pem", "does not exist"),
        (tmp_path, "is a folder, not a PEM file"),
        (good.key, "holds no PEM certificate"),
    ]:
        with pytest.raises(TrustError, match=sentence):
            client_context(bundle)


def test_a_service_with_a_wrong_pair_stops_with_one_sentence(tmp_path: Path) -> None:
    good, other = make_tls(tmp_path / "good"), make_tls(tmp_path / "other")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "flamenco", *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env={"PATH": "/usr/bin:/bin", "XDG_CONFIG_HOME": str(tmp_path / "cfg")},
        )

    data = ["--data-dir", str(tmp_path / "d"), "--port", str(free_port())]
    alone = run("server", *data, "--tls-cert", str(good.cert))
    assert alone.returncode == 2
    assert "--tls-cert and --tls-key go together" in alone.stderr
    assert "Traceback" not in alone.stderr
    mismatch = run("dashboard", "--tls-cert", str(good.cert), "--tls-key", str(other.key))
    assert mismatch.returncode == 2
    assert f"The TLS key {other.key} does not match the certificate {good.cert}." in " ".join(
        mismatch.stderr.split()
    )
    no_bundle = run("jobs", "list", "--server", "https://127.0.0.1:1")
    assert no_bundle.returncode == 1  # nothing listens there: an ordinary unreachable
    bad_bundle = run("--ca-bundle", str(tmp_path / "nope.pem"), "jobs", "list")
    assert bad_bundle.returncode == 1
    assert f"The CA bundle {tmp_path / 'nope.pem'} does not exist." in bad_bundle.stderr


def test_the_header_deadline_holds_over_tls(tmp_path: Path) -> None:
    """http_protocol.py's deadline counts from the end of the TLS handshake."""
    with TestFarm(tmp_path, tls=True) as farm:
        farm.start_server(env={"FLAMENCO_SERVER_HEADER_TIMEOUT_S": "1"})
        context = farm.verify()
        with (
            socket.create_connection(("127.0.0.1", port_of(farm.server_url)), timeout=10) as raw,
            context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
        ):
            assert tls.version() is not None  # the handshake is done
            tls.settimeout(8)
            assert tls.recv(1) == b""  # closed by the Server, long before our 8 s


# ---- every link, trusted and untrusted ---------------------------------------------------------


def test_the_cli_verifies_the_server_and_never_speaks_plain_http(tls_farm: TestFarm) -> None:
    farm = tls_farm
    farm.start_server()
    assert farm.server_url.startswith("https://")
    listed = farm.cli("jobs", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout) == []

    proxy = RecordingProxy(port_of(farm.server_url))
    try:
        refused = farm.cli(
            "jobs", "list", env={**NO_CA, "FLAMENCO_SERVER": f"https://{proxy.url_host}"}
        )
        assert refused.returncode == 1
        assert untrusted(proxy.url_host).search(refused.stderr), refused.stderr
        assert len(refused.stderr.strip().splitlines()) == 1  # one sentence, no traceback
        assert proxy.first_bytes, "the CLI never connected"
        # Every connection began a TLS handshake; not one carried an HTTP request in clear.
        assert all(b[:1] == b"\x16" for b in proxy.first_bytes), proxy.first_bytes
        assert not any(b.startswith(HTTP_METHODS) for b in proxy.first_bytes)

        # `--ca-bundle` on the command line does what FLAMENCO_CA_BUNDLE does.
        bundle = str(farm.tls.ca_bundle) if farm.tls else ""
        env = {**NO_CA, "FLAMENCO_SERVER": f"https://{proxy.url_host}"}
        trusted = farm.cli("--ca-bundle", bundle, "jobs", "list", env=env)
        assert trusted.returncode == 0, trusted.stderr
    finally:
        proxy.close()


def test_a_certificate_for_another_host_is_refused_with_a_sentence_that_says_so(
    tls_farm: TestFarm,
) -> None:
    farm = tls_farm
    farm.start_server()
    # 127.0.0.2 reaches this machine too, but the certificate names 127.0.0.1 and localhost.
    proxy = RecordingProxy(port_of(farm.server_url), host="127.0.0.2")
    try:
        done = farm.cli("jobs", "list", env={"FLAMENCO_SERVER": f"https://{proxy.url_host}"})
        assert done.returncode == 1
        assert (
            f"The certificate of {proxy.url_host} is not valid for that host name (" in done.stderr
        ), done.stderr
        assert "127.0.0.2" in done.stderr.split("(")[1]  # the reason names the host it lacks
    finally:
        proxy.close()


def test_http_to_an_https_port_is_a_clear_sentence(tls_farm: TestFarm) -> None:
    farm = tls_farm
    farm.start_server()
    host_port = farm.server_url.removeprefix("https://")
    done = farm.cli("jobs", "list", env={"FLAMENCO_SERVER": f"http://{host_port}"})
    assert done.returncode == 1
    assert f"{host_port} speaks HTTPS, not plain HTTP; use https://{host_port}" in done.stderr


def test_a_manager_without_the_ca_logs_the_sentence_and_is_never_online(
    tls_farm: TestFarm,
) -> None:
    farm = tls_farm
    farm.start_server()
    farm.start_manager(env=NO_CA)
    host_port = farm.server_url.removeprefix("https://")
    log = farm.managers["local"].proc
    wait_until(lambda: untrusted(host_port).search(log.output()), 30, "the Manager's sentence")
    assert "the Server is not trusted, working offline" in log.output()
    assert log.alive()  # it keeps serving its Workers, and retrying
    assert not farm.manager_online("local")


def test_a_worker_without_the_ca_stops_with_the_sentence(tls_farm: TestFarm) -> None:
    farm = tls_farm
    farm.start_server()
    manager_url = farm.start_manager()
    worker = farm.start_worker("w-untrusting", env=NO_CA)
    wait_until(lambda: not worker.alive(), 60, "the Worker to stop")
    assert worker.popen.returncode == 1
    host_port = manager_url.removeprefix("https://")
    assert untrusted(host_port).search(worker.output()), worker.output()
    assert "Traceback" not in worker.output()


def test_dashboard_over_https_logs_in_through_a_verified_server(tls_farm: TestFarm) -> None:
    farm = tls_farm
    farm.start_server()
    assert farm.secrets is not None
    login = {"username": "admin", "password": farm.secrets.admin_password, "next": "/"}

    url, _ = farm.start_dashboard()
    assert url.startswith("https://")
    with httpx.Client(base_url=url, verify=farm.verify()) as browser:
        answer = browser.post("/login", data=login)
        assert answer.status_code == 303, answer.text
        cookie = answer.headers["set-cookie"].lower()
        assert "secure" in cookie  # served over HTTPS: the session cookie stays on HTTPS

    untrusting_url, _ = farm.start_dashboard(env=NO_CA)
    host_port = farm.server_url.removeprefix("https://")
    with httpx.Client(base_url=untrusting_url, verify=farm.verify()) as browser:
        answer = browser.post("/login", data=login)
        assert answer.status_code == 502
        assert untrusted(host_port).search(answer.text.replace("&#39;", "'")), answer.text


def test_a_farm_with_tls_everywhere_renders_the_demo_job(
    tls_farm: TestFarm, demo_scene: Path
) -> None:
    farm = tls_farm
    farm.start_server()
    manager_url = farm.start_manager()
    assert manager_url.startswith("https://")
    farm.start_worker("w-tls")
    done = farm.cli(
        "submit",
        str(demo_scene),
        "--frames",
        f"1-{DEMO_FRAMES}",
        "--chunk",
        "5",
        "--wait",
        "--json",
    )
    assert done.returncode == 0, done.stderr + farm.logs()
    job = json.loads(done.stdout)
    assert job["status"] == "completed"
    assert job["frames_done"] == DEMO_FRAMES
    assert farm.manager_online("local")


def test_the_ca_bundle_variable_reaches_every_client_setting(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from flamenco.config import (
        ClientSettings,
        DashboardSettings,
        ManagerSettings,
        WorkerSettings,
        load,
    )

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    monkeypatch.setenv("FLAMENCO_CONFIG", str(tmp_path / "none.toml"))
    monkeypatch.setenv("FLAMENCO_CA_BUNDLE", "/ca/all.pem")
    monkeypatch.setenv("FLAMENCO_WORKER_CA_BUNDLE", "/ca/worker.pem")
    assert load(ClientSettings).ca_bundle == "/ca/all.pem"
    assert load(ManagerSettings).ca_bundle == "/ca/all.pem"
    assert load(DashboardSettings).ca_bundle == "/ca/all.pem"
    assert load(WorkerSettings).ca_bundle == "/ca/worker.pem"  # its own variable first
    assert load(WorkerSettings, {"ca_bundle": "/ca/flag.pem"}).ca_bundle == "/ca/flag.pem"


def test_untrusted_sentence_tells_trust_from_host_name() -> None:
    from flamenco.tls import untrusted_sentence

    ca = trustme.CA()
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("farm.example").configure_cert(server_ctx)
    failures = {}
    for name, trust in (("self", None), ("host", ca)):
        client = ssl.create_default_context()
        if trust is not None:
            trust.configure_trust(client)
        a, b = socket.socketpair()
        with a, b:
            server = threading.Thread(target=_handshake, args=(server_ctx, a), daemon=True)
            server.start()
            try:
                client.wrap_socket(b, server_hostname="other.example").close()
            except ssl.SSLCertVerificationError as exc:
                failures[name] = exc
            server.join(5)
    hint = "pass --ca-bundle FILE"
    assert untrusted_sentence("h:1", failures["self"], hint).startswith(
        "The certificate of h:1 is not trusted ("
    )
    assert untrusted_sentence("h:1", failures["host"], hint).startswith(
        "The certificate of h:1 is not valid for that host name (Hostname mismatch"
    )


def _handshake(context: ssl.SSLContext, sock: socket.socket) -> None:
    with contextlib.suppress(ssl.SSLError, OSError):  # the client refuses the certificate
        context.wrap_socket(sock, server_side=True).close()


def test_up_serves_https_everywhere_and_writes_what_its_clients_need(tmp_path: Path) -> None:
    tls = make_tls(tmp_path / "tls")
    args = [
        "--tls-cert",
        str(tls.cert),
        "--tls-key",
        str(tls.key),
        "--ca-bundle",
        str(tls.ca_bundle),
    ]
    with UpFarm(tmp_path, *args) as up:
        up.wait_running()
        printed = up.output()
        server_url = up.server_url.replace("http://", "https://")
        manager_url = up.manager_url.replace("http://", "https://")
        assert f"Server {server_url}, Manager {manager_url}" in printed
        assert f"Dashboard: {up.dashboard_url.replace('http://', 'https://')} " in printed
        assert f"flamenco worker --manager {manager_url} --ca-bundle {tls.ca_bundle}" in printed
        assert "http://" not in printed

        config = (up.home / ".config" / "flamenco" / "client.toml").read_text()
        assert f'server = "{server_url}"' in config
        assert f'ca_bundle = "{tls.ca_bundle}"' in config
        # The CLI with nothing but that configuration trusts the farm.
        env = {"PATH": "/usr/bin:/bin", "HOME": str(up.home)}
        listed = subprocess.run(
            [sys.executable, "-m", "flamenco", "jobs", "list", "--json"],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            check=False,
        )
        assert listed.returncode == 0, listed.stderr
        # Its Manager synced with its Server and its Worker joined, both over verified HTTPS.
        api = SyncApi(server_url, up.test_farm().token, ca_bundle=str(tls.ca_bundle))

        def worker_online() -> bool:
            managers = api.call("GET", "/api/v1/managers", wire.ManagerList).root
            return any(m.status == "online" and m.workers for m in managers)

        wait_until(worker_online, 120, "up's Worker online at its Manager")


def test_a_worker_service_keeps_the_ca_bundle_it_was_installed_with(
    machine: Machine, tmp_path: Path
) -> None:
    tls = make_tls(tmp_path / "tls")
    machine.env["FLAMENCO_CA_BUNDLE"] = str(tls.ca_bundle)
    installed = machine.flamenco(
        "service", "install", "--user", "worker", "--manager", "https://farm.example:7777"
    )
    assert installed.returncode == 0, installed.stderr
    environment = machine.env_file.read_text().splitlines()
    assert f"FLAMENCO_CA_BUNDLE='{tls.ca_bundle}'" in environment
    assert "--manager https://farm.example:7777" in machine.unit.read_text()
