"""`flamenco up --host 0.0.0.0` on one network; a Worker on another joins with the command `up`
printed, and renders the demo job.

The farm's machine is a network namespace whose default route leads over a veth pair to the
second machine's namespace, as a workstation's leads over its network card. The Worker is
started with the printed line itself, read from `up`'s piped output (so it must be one line).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from farmkit import FINAL, wait_until
from flamenco import wire
from flamenco.core.states import JobStatus
from netkit import two_networks
from upkit import DEFAULT_PORTS, UpFarm

pytestmark = pytest.mark.blender

WORKER_LINE = "Workers on other machines: "
PLACEHOLDER = re.compile(r"<worker_secret in [^>]+>")  # a pipe is no place for the secret


def printed_line(text: str, start: str) -> str:
    lines = [line for line in text.splitlines() if line.startswith(start)]
    assert len(lines) == 1, text
    return lines[0]


def start_remote_worker(command: str, namespace: str, folder: Path) -> subprocess.Popen[bytes]:
    """The printed command as a person pastes it into a shell on the other machine."""
    folder.mkdir(parents=True)
    env = {
        **os.environ,
        "HOME": str(folder / "home"),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }
    with (folder / "worker.log").open("wb") as log:
        return subprocess.Popen(
            ["ip", "netns", "exec", namespace, "sh", "-c", command],
            cwd=folder,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def stop(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@pytest.mark.timeout(900)
def test_a_worker_on_another_network_joins_with_the_printed_command(tmp_path: Path) -> None:
    with (
        two_networks(main_default_route=True) as net,
        UpFarm(tmp_path, "--host", "0.0.0.0", "--workers", "0", "--demo") as up,
    ):
        up.wait_running()
        text = up.output()
        address = net.main_address
        server_port, manager_port, dashboard_port = (p + up.offset for p in DEFAULT_PORTS)
        running = printed_line(text, "Flamenco farm running.")
        assert f"Server http://{address}:{server_port}" in running, text
        assert f"Manager http://{address}:{manager_port}" in running, text
        dashboard = printed_line(text, "Dashboard: ")
        assert dashboard.startswith(f"Dashboard: http://{address}:{dashboard_port} "), text
        addon = printed_line(text, "Blender add-on: ")
        assert addon.endswith(f"http://{address}:{server_port}"), text
        command = printed_line(text, WORKER_LINE).removeprefix(WORKER_LINE)
        assert command.endswith(f"flamenco worker --manager http://{address}:{manager_port}")
        for line in (running, dashboard, addon, command):
            assert "127.0.0.1" not in line and "0.0.0.0" not in line, line
        assert "Other machines cannot join" not in text

        # The other machine's person reads the secret where the placeholder says.
        secret = up.test_farm().secrets
        assert secret is not None and PLACEHOLDER.search(command), command
        pasted = PLACEHOLDER.sub(secret.worker_secret, command)
        remote = start_remote_worker(pasted, net.site, tmp_path / "remote")
        log = tmp_path / "remote" / "worker.log"
        farm = up.test_farm()

        def demo_job_done() -> wire.Job | None:
            if remote.poll() is not None:
                raise AssertionError(f"the remote Worker exited:\n{log.read_text()[-3000:]}")
            if "Error:" in up.output():
                raise AssertionError(f"flamenco up reported an error:\n{up.output()}")
            submitted = re.search(r"Demo job (\S+) submitted", up.output())
            job = submitted and farm.job(submitted.group(1))
            return job if job and job.status in FINAL else None

        try:
            job = wait_until(demo_job_done, 720, "the demo job rendered by the remote Worker")
            assert job.status == JobStatus.COMPLETED, (job, up.output())
            tasks = farm.tasks(job.id)
            assert tasks and {t.worker for t in tasks} == {os.uname().nodename}, tasks
            text = log.read_text(errors="replace")
            assert f"Manager http://{address}:{manager_port}" in text, text
        finally:
            stop(remote)
        assert up.terminate() == 0, up.output()
