"""`flamenco up` as a user runs it, for tests: its children, its output, and its stop."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import httpx

from farmkit import TestFarm, wait_until
from flamenco.cli.up import bootstrap

DEFAULT_PORTS = (9999, 7777, 8888)  # Server, Manager, Dashboard
COMMAND_LABELS = {"server": "Server", "manager": "Manager", "dashboard": "Dashboard"}


def free_offset() -> int:
    """A port offset under which the Server, Manager and Dashboard ports are all free."""
    for _ in range(100):
        offset = random.randint(20_000, 40_000)
        with contextlib.ExitStack() as stack:
            try:
                for port in DEFAULT_PORTS:
                    sock = stack.enter_context(socket.socket())
                    sock.bind(("127.0.0.1", port + offset))
            except OSError:
                continue
            return offset
    raise AssertionError("no free port offset found")


def processes_mentioning(*texts: str) -> dict[int, str]:
    found = {}
    for proc in Path("/proc").iterdir():
        with contextlib.suppress(OSError, ValueError):
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            if any(text in cmdline for text in texts) and int(proc.name) != os.getpid():
                found[int(proc.name)] = cmdline
    return found


def _parent_of(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat[stat.rindex(")") + 2 :].split()[1])  # after "pid (comm) state"


class UpFarm:
    """One `flamenco up` in its own process group; everything of it is killed on exit."""

    def __init__(self, root: Path, *args: str) -> None:
        self.root = root
        self.data_dir = root / "farm"
        self.home = root / "home"
        self.offset = free_offset()
        self.server_url = f"http://127.0.0.1:{DEFAULT_PORTS[0] + self.offset}"
        self.manager_url = f"http://127.0.0.1:{DEFAULT_PORTS[1] + self.offset}"
        self.dashboard_url = f"http://127.0.0.1:{DEFAULT_PORTS[2] + self.offset}"
        env = {**os.environ, "HOME": str(self.home)}
        env.pop("XDG_CONFIG_HOME", None)  # the client configuration lands under HOME
        env.pop("COLUMNS", None)  # a pipe, 80 columns to Rich: printed lines must not break
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "flamenco",
                "up",
                "--data-dir",
                str(self.data_dir),
                "--port-offset",
                str(self.offset),
                *args,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            start_new_session=True,
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    def __enter__(self) -> UpFarm:
        return self

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def output(self) -> str:
        return "".join(self.lines)

    def wait_running(self, timeout: float = 180) -> None:
        def running() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"flamenco up exited:\n{self.output()}")
            return "Press Ctrl-C to stop." in self.output()

        wait_until(running, timeout, "flamenco up to start its farm", every=0.2)

    def test_farm(self) -> TestFarm:
        """The job helpers of farmkit, pointed at this farm (its secrets are up's own)."""
        farm = TestFarm(self.data_dir)
        farm.config_home = self.root / "config"  # the test's own, outside the farm's folder
        farm.secrets = bootstrap(self.data_dir)  # reads farm.toml, which up wrote
        farm.server_url = self.server_url
        return farm

    def children(self) -> dict[str, int]:
        """Label (as up logs it: Server, Manager, Dashboard, Worker N) -> pid."""
        found = {}
        for pid, cmdline in processes_mentioning(" -m flamenco ").items():
            with contextlib.suppress(OSError, ValueError, IndexError):
                if _parent_of(pid) != self.proc.pid:
                    continue
                command = cmdline.split(" -m flamenco ", 1)[1].split()[0]
                if command == "worker":
                    data = cmdline.split("--data-dir ", 1)[1].split()[0]
                    found[f"Worker {data.rsplit('-', 1)[1]}"] = pid
                elif command in COMMAND_LABELS:
                    found[COMMAND_LABELS[command]] = pid
                # else: a child up has forked but not yet exec'd still reads "flamenco up"
        return found

    def answers(self, url: str) -> bool:
        with contextlib.suppress(httpx.HTTPError):
            return httpx.get(f"{url}/api/v1/version", timeout=2).status_code == 200
        return False

    def terminate(self, timeout: float = 60) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)
