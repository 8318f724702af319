"""`flamenco up --host 0.0.0.0 --tls-cert … --tls-key …` on one network; a Worker on another
finds its Manager by its DNS-SD announcement, joins over verified HTTPS, and renders the demo.

The farm's machine is a network namespace whose default route leads over a veth pair to the
second machine's namespace (tests/netkit.py). The certificate is a throwaway CA's (trustme),
valid for the farm's address on that link and for 127.0.0.1, where up's own processes reach it.
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

from farmkit import make_tls, wait_until
from flamenco import wire
from flamenco.client import SyncApi
from netkit import two_networks
from upkit import DEFAULT_PORTS, UpFarm

pytestmark = pytest.mark.blender


@pytest.mark.timeout(900)
def test_a_worker_on_another_network_finds_the_tls_farm_and_renders(tmp_path: Path) -> None:
    with two_networks(main_default_route=True) as net:
        address = net.main_address
        tls = make_tls(tmp_path / "tls", ("127.0.0.1", "localhost", address))
        args = ["--host", "0.0.0.0", "--workers", "0", "--demo"]
        args += ["--tls-cert", str(tls.cert), "--tls-key", str(tls.key)]
        args += ["--ca-bundle", str(tls.ca_bundle)]
        with UpFarm(tmp_path, *args) as up:
            up.wait_running()
            printed = up.output()
            manager_port = DEFAULT_PORTS[1] + up.offset
            assert f"Manager https://{address}:{manager_port}" in printed, printed
            assert "http://" not in printed, printed
            secret = up.test_farm().secrets
            assert secret is not None

            # The other machine: no --manager (it browses), the farm's CA, the join secret.
            folder = tmp_path / "remote"
            (folder / "home").mkdir(parents=True)
            env = {
                **os.environ,
                "HOME": str(folder / "home"),
                "FLAMENCO_WORKER_SECRET": secret.worker_secret,
                "FLAMENCO_CA_BUNDLE": str(tls.ca_bundle),
            }
            env.pop("XDG_CONFIG_HOME", None)
            worker_args = ["worker", "--name", "remote", "--data-dir", str(folder / "data")]
            with (folder / "worker.log").open("wb") as log:
                remote = subprocess.Popen(
                    [*net.prefix(net.site), sys.executable, "-m", "flamenco", *worker_args],
                    cwd=folder,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            try:
                ended = wait_until(
                    lambda: re.search(r"Demo job (completed|failed|canceled)\.", up.output()),
                    720,
                    "the demo job to end",
                )
                assert ended.group(1) == "completed", up.output()
                submitted = re.search(r"Demo job (\S+) submitted", up.output())
                assert submitted is not None, up.output()
                server_url = up.server_url.replace("http://", "https://")
                api = SyncApi(server_url, up.test_farm().token, ca_bundle=str(tls.ca_bundle))
                tasks = api.call("GET", f"/api/v1/jobs/{submitted.group(1)}/tasks", wire.TaskList)
                assert tasks.root and {t.worker for t in tasks.root} == {"remote"}, tasks
                worker_log = (folder / "worker.log").read_text(errors="replace")
                # It found the Manager by its announcement, at the https URL announced.
                assert f"Manager https://{address}:{manager_port}" in worker_log, worker_log
            finally:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(remote.pid, signal.SIGTERM)
                try:
                    remote.wait(15)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(remote.pid, signal.SIGKILL)
                    remote.wait()
            assert up.terminate() == 0, up.output()
