"""The fault matrix: processes die and links fail mid-job; nothing is lost or done twice.

Each case ends the same way: the job completed, every frame present exactly once, and each
task completed once in the Server's record (late duplicates are recorded as ignored).
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

import httpx
import pytest

from farmkit import TestFarm, active_task, assert_completed_exactly_once, wait_until

pytestmark = pytest.mark.blender

FAST_WORKER_TIMEOUT = {"FLAMENCO_MANAGER_WORKER_TIMEOUT_S": "4"}


def submit(farm: TestFarm, scene: Path) -> str:
    done = farm.cli("submit", str(scene), "--frames", "1-8", "--chunk", "2", "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)["id"]


def test_a_worker_killed_mid_render_has_its_task_finished_by_another(
    farm: TestFarm, slow_scene: Path
) -> None:
    farm.start_server()
    farm.start_manager(env=FAST_WORKER_TIMEOUT)
    workers = {name: farm.start_worker(name) for name in ("w-a", "w-b")}
    job_id = submit(farm, slow_scene)

    victim_task = wait_until(lambda: active_task(farm, job_id), 120, "a task being rendered")
    assert victim_task.worker is not None
    workers[victim_task.worker].signal(signal.SIGKILL)

    assert_completed_exactly_once(farm, job_id)
    (finished,) = [t for t in farm.tasks(job_id) if t.id == victim_task.id]
    assert finished.worker != victim_task.worker


def test_a_manager_killed_mid_job_and_restarted_loses_nothing(
    farm: TestFarm, slow_scene: Path
) -> None:
    farm.start_server()
    farm.start_manager()
    farm.start_worker("w-a")
    farm.start_worker("w-b")
    job_id = submit(farm, slow_scene)

    wait_until(lambda: active_task(farm, job_id), 120, "a task being rendered")
    manager = farm.managers["local"].proc
    manager.signal(signal.SIGKILL)
    manager.popen.wait()
    farm.restart(manager)

    assert_completed_exactly_once(farm, job_id)


def test_the_server_away_mid_job_then_back_loses_nothing(farm: TestFarm, slow_scene: Path) -> None:
    farm.start_server()
    farm.start_manager()
    farm.start_worker("w-a")
    job_id = submit(farm, slow_scene)
    handle = farm.managers["local"]

    def manager_status() -> dict:
        headers = {"Authorization": f"Bearer {handle.token}"}
        return httpx.get(f"{handle.url}/api/v1/status", headers=headers, timeout=5).json()

    wait_until(lambda: active_task(farm, job_id), 120, "a task being rendered")
    server = next(p for p in farm.procs if p.label == "server")
    server.stop()
    # Workers go on while the Server is away: their results pile up at the Manager.
    wait_until(
        lambda: (s := manager_status())["server_online"] is False and s["outbox"] >= 3,
        120,
        "the Manager buffering results while the Server is down",
    )
    farm.restart(server)
    farm._wait_http(farm.server_url, farm.procs[-1])

    assert_completed_exactly_once(farm, job_id)


def test_a_manager_that_never_returns_loses_its_leases_to_the_other_site(
    farm: TestFarm, slow_scene: Path
) -> None:
    farm.start_server(env={"FLAMENCO_SERVER_LEASE_TIMEOUT_S": "4"})
    farm.start_manager("north")
    farm.start_manager("south")
    north_worker = farm.start_worker("n-1", manager="north")
    farm.start_worker("s-1", manager="south")
    job_id = submit(farm, slow_scene)

    lost = wait_until(lambda: active_task(farm, job_id, "north"), 120, "a task rendering north")
    farm.managers["north"].proc.signal(signal.SIGKILL)
    north_worker.signal(signal.SIGKILL)

    assert_completed_exactly_once(farm, job_id)
    (finished,) = [t for t in farm.tasks(job_id) if t.id == lost.id]
    assert (finished.manager, finished.worker) == ("south", "s-1")


def test_a_blob_wanted_by_four_workers_is_fetched_from_the_server_once(
    farm: TestFarm, demo_scene: Path
) -> None:
    farm.start_server()
    farm.start_manager()
    names = [f"w{n}" for n in range(4)]
    for name in names:
        farm.start_worker(name)
    handle = farm.managers["local"]

    def manager_status() -> dict:
        headers = {"Authorization": f"Bearer {handle.token}"}
        return httpx.get(f"{handle.url}/api/v1/status", headers=headers, timeout=5).json()

    wait_until(lambda: len(manager_status()["workers"]) == 4, 60, "four Workers registered")
    done = farm.cli("submit", str(demo_scene), "--frames", "1-4", "--json")
    job_id = json.loads(done.stdout)["id"]
    assert farm.wait_job(job_id).status == "completed", farm.logs()

    assert sorted(t.worker or "" for t in farm.tasks(job_id)) == names
    assert manager_status()["blob_downloads"] == 1
    # The scene is the one blob every Worker's cache holds (each also keeps its own frames).
    caches = [{p.name for p in (farm.root / name / "cache").glob("??/*")} for name in names]
    assert len(set.intersection(*caches)) == 1
