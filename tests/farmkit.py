"""Running farm components as real processes on free ports, for tests and benchmarks."""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx

from flamenco import wire
from flamenco.cli.up import FarmSecrets, bootstrap
from flamenco.client import SyncApi
from flamenco.core.states import JobStatus
from flamenco.tls import client_context

T = TypeVar("T")
FINAL = {JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELED}
DEMO_FRAMES = 10  # the demo_scene fixture: 10 frames of 96x54
DEMO_RESOLUTION = (96, 54)
JOB_FRAMES = list(range(1, 9))  # the fault tests' job: frames 1-8, chunk 2


def process_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(check: Callable[[], T | None], timeout: float, what: str, every: float = 0.1) -> T:
    """Poll an observable condition until it holds; fail with `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


@dataclass
class ManagerHandle:
    name: str
    url: str
    token: str
    secret: str
    proc: Proc


class Proc:
    def __init__(
        self,
        label: str,
        args: list[str],
        env: dict[str, str],
        log: Path,
        prefix: list[str] | None = None,
    ) -> None:
        self.label, self.log, self.args, self.env = label, log, args, env
        self.prefix = prefix or []  # e.g. `ip netns exec NAME` to run it on another network
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as sink:
            self.popen = subprocess.Popen(
                [*self.prefix, sys.executable, "-m", "flamenco", *args],
                env={**os.environ, **env},
                stdout=sink,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def signal(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, sig)

    def stop(self, grace: float = 10.0) -> None:
        self.signal(signal.SIGTERM)
        try:
            self.popen.wait(grace)
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGKILL)
            self.popen.wait()

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@dataclass
class FarmTls:
    """A throwaway CA (trustme) and one certificate it issued for the farm's hosts, as PEM
    files: what `--tls-cert`, `--tls-key` and `--ca-bundle` are given."""

    ca_bundle: Path
    cert: Path
    key: Path

    @property
    def service_args(self) -> list[str]:
        return ["--tls-cert", str(self.cert), "--tls-key", str(self.key)]

    @property
    def env(self) -> dict[str, str]:
        return {"FLAMENCO_CA_BUNDLE": str(self.ca_bundle)}


def make_tls(folder: Path, hosts: tuple[str, ...] = ("127.0.0.1", "localhost")) -> FarmTls:
    import trustme

    folder.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA(organization_name="Flamenco test CA")
    issued = ca.issue_cert(*hosts)
    made = FarmTls(folder / "ca.pem", folder / "cert.pem", folder / "key.pem")
    ca.cert_pem.write_to_path(str(made.ca_bundle))
    issued.private_key_pem.write_to_path(str(made.key))
    with made.cert.open("wb") as f:  # the chain: the certificate, then what issued it
        for pem in issued.cert_chain_pems:
            f.write(pem.bytes())
    return made


class TestFarm:
    """Server, Managers and Workers of one test, each a process in its own group.

    With `tls`, every service serves HTTPS with a certificate of a throwaway CA that every
    process, client and CLI call of the farm trusts (FLAMENCO_CA_BUNDLE); `tls_hosts` are the
    names and addresses the certificate is valid for.
    """

    __test__ = False

    def __init__(
        self,
        root: Path,
        tls: bool = False,
        tls_hosts: tuple[str, ...] = ("127.0.0.1", "localhost"),
    ) -> None:
        self.root = root
        self.tls = make_tls(root / "tls", tls_hosts) if tls else None
        self.scheme = "https" if tls else "http"
        self.procs: list[Proc] = []
        self.secrets: FarmSecrets | None = None
        self.server_url = ""
        self.manager_url = ""
        self.managers: dict[str, ManagerHandle] = {}
        self._clients: dict[tuple[str, str], SyncApi] = {}
        self.config_home = root / "config"

    def __enter__(self) -> TestFarm:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()

    def stop_all(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()

    # ---- starting parts ----------------------------------------------------------------------

    def start_server(
        self,
        env: dict[str, str] | None = None,
        host: str = "127.0.0.1",
        data_dir: Path | None = None,
    ) -> str:
        env = env or {}
        # The admin and tokens go into the database this Server uses, as `flamenco up` does.
        self.secrets = bootstrap(self.root, env.get("FLAMENCO_SERVER_DATABASE_URL", ""))
        port = free_port()
        self.server_url = f"{self.scheme}://127.0.0.1:{port}"
        args = ["server", "--host", host, "--port", str(port), *self._tls_args()]
        data_dir = data_dir or self.root / "server"
        proc = self._start("server", [*args, "--data-dir", str(data_dir)], env)
        self._wait_http(self.server_url, proc)
        return self.server_url

    def start_manager(
        self,
        name: str = "local",
        env: dict[str, str] | None = None,
        prefix: list[str] | None = None,
        server_url: str | None = None,
        host: str = "127.0.0.1",
        port: int | None = None,
    ) -> str:
        """Start a Manager; `local` uses the bootstrap token, others are added through the API.

        With a prefix (another network), readiness is when the Server sees it online. `host`
        is the address it listens on (and its URL's host); `port` a free one unless given.
        """
        assert self.secrets is not None
        if name == "local":
            token, secret = self.secrets.manager_token, self.secrets.worker_secret
        else:
            issued = self.api().call(
                "POST", "/api/v1/managers", wire.TokenIssued, wire.ManagerCreate(name=name)
            )
            token, secret = issued.token, secrets.token_urlsafe(16)
        port = port or free_port()
        url = f"{self.scheme}://{host}:{port}"
        args = [
            "manager",
            *self._tls_args(),
            "--host",
            host,
            "--server",
            server_url or self.server_url,
            "--name",
            name,
            "--port",
            str(port),
            "--data-dir",
            str(self.root / f"manager-{name}"),
        ]
        env = {"FLAMENCO_MANAGER_TOKEN": token, "FLAMENCO_MANAGER_SECRET": secret, **(env or {})}
        proc = self._start(f"manager-{name}", args, env, prefix)
        if prefix:
            wait_until(lambda: self.manager_online(name), 60, f"Manager {name} online")
        else:
            self._wait_http(url, proc)
        self.managers[name] = ManagerHandle(name, url, token, secret, proc)
        self.manager_url = url
        return url

    def start_dashboard(self, env: dict[str, str] | None = None) -> tuple[str, Proc]:
        """A Dashboard in front of this farm's Server: its URL and process."""
        port = free_port()
        url = f"{self.scheme}://127.0.0.1:{port}"
        args = ["dashboard", "--server", self.server_url, "--port", str(port), *self._tls_args()]
        proc = self._start("dashboard", args, env or {})
        self._wait_http(url, proc)
        return url, proc

    def workers_on_manager(self, manager: str = "local") -> dict[str, dict[str, Any]]:
        """The Workers as the Manager itself lists them now (its status), by name."""
        assert self.secrets is not None
        status = httpx.get(
            f"{self.managers[manager].url}/api/v1/status",
            headers={"Authorization": f"Bearer {self.secrets.manager_token}"},
            timeout=30,
            verify=self.verify(),
        ).json()
        return {w["name"]: w for w in status["workers"]}

    def manager_online(self, name: str) -> bool:
        managers = self.api().call("GET", "/api/v1/managers", wire.ManagerList).root
        return any(m.name == name and m.status == "online" for m in managers)

    def start_worker(
        self,
        name: str,
        manager: str = "local",
        env: dict[str, str] | None = None,
        args: list[str] | None = None,
    ) -> Proc:
        handle = self.managers[manager]
        args = [
            "worker",
            "--manager",
            handle.url,
            "--name",
            name,
            "--data-dir",
            str(self.root / name),
            *(args or []),
        ]
        env = {"FLAMENCO_WORKER_SECRET": handle.secret, **(env or {})}
        return self._start(name, args, env, handle.proc.prefix)

    def start_discovering_worker(
        self, name: str, secret: str, prefix: list[str], args: list[str] | None = None
    ) -> Proc:
        """A Worker given no --manager, on the network of `prefix`: it joins the Manager it
        finds announced there (flamenco.discovery)."""
        args = ["worker", "--name", name, "--data-dir", str(self.root / name), *(args or [])]
        return self._start(name, args, {"FLAMENCO_WORKER_SECRET": secret}, prefix)

    def restart(self, proc: Proc) -> Proc:
        """Start the same command again, on the same data folder."""
        again = Proc(proc.label, proc.args, proc.env, proc.log, proc.prefix)
        self.procs.append(again)
        return again

    def _start(
        self, label: str, args: list[str], env: dict[str, str], prefix: list[str] | None = None
    ) -> Proc:
        trust = self.tls.env if self.tls else {}
        env = {"XDG_CONFIG_HOME": str(self.config_home), **trust, **env}
        proc = Proc(label, args, env, self.root / "logs" / f"{label}.log", prefix)
        self.procs.append(proc)
        return proc

    def _tls_args(self) -> list[str]:
        return self.tls.service_args if self.tls else []

    def verify(self) -> ssl.SSLContext:
        """What a client of this farm trusts: its CA, else the system's trust store."""
        return client_context(self.tls.ca_bundle if self.tls else None)

    def _wait_http(self, url: str, proc: Proc) -> None:
        verify = self.verify()

        def answers() -> bool:
            if not proc.alive():
                raise AssertionError(f"{proc.label} exited:\n{proc.output()[-3000:]}")
            with contextlib.suppress(httpx.HTTPError):
                version = httpx.get(f"{url}/api/v1/version", timeout=2, verify=verify)
                return version.status_code == 200
            return False

        wait_until(answers, 60, f"{proc.label} at {url}")

    # ---- using the farm ----------------------------------------------------------------------

    @property
    def token(self) -> str:
        assert self.secrets is not None
        return self.secrets.admin_token

    def api(self, token: str | None = None) -> SyncApi:
        token = self.token if token is None else token
        if (self.server_url, token) not in self._clients:  # a client per token: TLS setup is slow
            ca_bundle = str(self.tls.ca_bundle) if self.tls else ""
            self._clients[(self.server_url, token)] = SyncApi(
                self.server_url, token, ca_bundle=ca_bundle
            )
        return self._clients[(self.server_url, token)]

    def join_worker(self, name: str, **info: Any) -> dict[str, str]:
        """Register a Worker at the farm's Manager over HTTP, as a Worker process would (with
        Blender 5.0.1 unless `info` says otherwise); the headers its requests then carry."""
        assert self.secrets is not None
        registration = {"name": name, "secret": self.secrets.worker_secret}
        joined = httpx.post(
            f"{self.manager_url}/api/v1/workers/register",
            json={**registration, "blender_version": "5.0.1", **info},
            timeout=30,
        )
        assert joined.status_code == 200, joined.text
        return {"Authorization": f"Bearer {joined.json()['token']}"}

    def cli(self, *args: str, env: dict[str, str] | None = None, timeout: float = 300) -> Any:
        """Run the `flamenco` CLI as a user would, pointed at this farm."""
        full_env = {
            **os.environ,
            "XDG_CONFIG_HOME": str(self.config_home),
            "XDG_CACHE_HOME": str(self.root / "user-cache"),  # the submitter's hash cache
            "FLAMENCO_SERVER": self.server_url,
            "FLAMENCO_TOKEN": self.token,
            "COLUMNS": "200",
            **(self.tls.env if self.tls else {}),
            **(env or {}),
        }
        return subprocess.run(
            [sys.executable, "-m", "flamenco", *args],
            env=full_env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def job(self, job_id: str) -> wire.Job:
        return self.api().call("GET", f"/api/v1/jobs/{job_id}", wire.Job)

    def tasks(self, job_id: str) -> list[wire.Task]:
        return self.api().call("GET", f"/api/v1/jobs/{job_id}/tasks", wire.TaskList).root

    def wait_job(self, job_id: str, timeout: float = 240) -> wire.Job:
        return wait_until(
            lambda: (job := self.job(job_id)).status in FINAL and job,
            timeout,
            f"job {job_id}",
            every=0.25,
        )

    def logs(self) -> str:
        return "\n".join(f"== {p.label}\n{p.output()[-4000:]}" for p in self.procs)


def active_task(farm: TestFarm, job_id: str, manager: str | None = None) -> wire.Task | None:
    """A task a Worker is rendering right now (optionally: under that Manager)."""
    for task in farm.tasks(job_id):
        rendering = task.status == "active" and task.worker and task.progress > 0
        if rendering and (manager is None or task.manager == manager):
            return task
    return None


def assert_completed_exactly_once(farm: TestFarm, job_id: str) -> wire.Job:
    job = farm.wait_job(job_id, timeout=300)
    assert job.status == "completed", farm.logs()
    frames = farm.api().call("GET", f"/api/v1/jobs/{job_id}/frames", wire.FrameList).root
    assert [f.frame for f in frames] == JOB_FRAMES
    assert sorted(p.name for p in Path(job.output_dir).iterdir()) == [
        f"frame_{n:06d}.png" for n in JOB_FRAMES
    ]
    history = farm.api().call("GET", f"/api/v1/jobs/{job_id}/history", wire.TaskEventList).root
    completions = Counter(
        e.task_id for e in history if e.status == "completed" and e.outcome == "applied"
    )
    assert completions == Counter({t.id: 1 for t in farm.tasks(job_id)}), history
    return job
