"""A site cut off from the Server at the network level, then reconnected.

The Server and one site share the main network; the other site (its Manager and Worker) is
in a network namespace of its own and reaches the Server through a veth pair that the test
takes down and up again.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from farmkit import TestFarm, active_task, assert_completed_exactly_once, wait_until
from netkit import two_networks

pytestmark = pytest.mark.blender


def test_a_site_cut_off_keeps_rendering_and_delivers_when_reconnected(
    farm: TestFarm, slow_scene: Path
) -> None:
    with two_networks() as net:
        farm.start_server(host="0.0.0.0", env={"FLAMENCO_SERVER_MANAGER_OFFLINE_S": "3"})
        remote_server = farm.server_url.replace("127.0.0.1", net.main_address)
        farm.start_manager("main-site")
        farm.start_worker("main-1", manager="main-site")
        farm.start_manager("remote", prefix=net.prefix(net.site), server_url=remote_server)
        remote_worker = farm.start_worker("remote-1", manager="remote")

        done = farm.cli("submit", str(slow_scene), "--frames", "1-8", "--chunk", "2", "--json")
        job_id = json.loads(done.stdout)["id"]
        cut_task = wait_until(
            lambda: active_task(farm, job_id, "remote"), 120, "a task rendering at the remote site"
        )
        net.cut()
        wait_until(lambda: not farm.manager_online("remote"), 60, "the Server losing the site")
        # Cut off, the remote Worker finishes its task all the same.
        finished = re.compile(rf"task {cut_task.id} completed")
        wait_until(
            lambda: finished.search(remote_worker.output()),
            120,
            "the remote Worker finishing its task while cut off",
        )
        net.restore()

        assert_completed_exactly_once(farm, job_id)
        (task,) = [t for t in farm.tasks(job_id) if t.id == cut_task.id]
        assert (task.manager, task.worker) == ("remote", "remote-1")
        farm.stop_all()
