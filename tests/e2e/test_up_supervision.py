"""`flamenco up` keeps its farm running: a child killed with SIGKILL comes back, and the job
submitted across the kill completes with every frame once. What the farm writes is private."""

from __future__ import annotations

import json
import os
import signal
import stat
import tomllib
from pathlib import Path

import pytest

from farmkit import TestFarm, active_task, assert_completed_exactly_once, wait_until
from upkit import UpFarm

pytestmark = pytest.mark.blender


def submit(farm: TestFarm, scene: Path, *extra: str) -> str:
    done = farm.cli("submit", str(scene), "--frames", "1-8", "--chunk", "2", "--json", *extra)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)["id"]


def kill_mid_job_and_see_it_complete(up: UpFarm, farm: TestFarm, label: str, scene: Path) -> None:
    urls = {"Server": up.server_url, "Manager": up.manager_url, "Dashboard": up.dashboard_url}
    job_id = submit(farm, scene)
    wait_until(lambda: active_task(farm, job_id), 120, f"a task of {job_id} rendering")
    victim = up.children()[label]
    os.kill(victim, signal.SIGKILL)

    def back() -> bool:
        pid = up.children().get(label)
        return pid is not None and pid != victim

    wait_until(back, 60, f"the {label} started again")
    if label in urls:
        wait_until(lambda: up.answers(urls[label]), 60, f"the {label} answering")
    assert_completed_exactly_once(farm, job_id)
    text = up.output()
    assert f"{label} (pid {victim}) was killed by SIGKILL" in text, text
    assert f"{label} started again" in text, text


@pytest.mark.timeout(1200)
def test_each_child_killed_under_flamenco_up_comes_back_and_the_job_completes(
    tmp_path: Path, slow_scene: Path
) -> None:
    with UpFarm(tmp_path) as up:
        up.wait_running()
        farm = up.test_farm()
        for label in ("Server", "Manager", "Dashboard", "Worker 1"):
            kill_mid_job_and_see_it_complete(up, farm, label, slow_scene)
        assert set(up.children()) == {"Server", "Manager", "Dashboard", "Worker 1"}
        assert up.terminate() == 0, up.output()
        wait_until(lambda: not up.children(), 30, "every child of flamenco up gone after SIGTERM")


def secrets_of(data_dir: Path) -> dict[str, str]:
    """Every secret the farm holds: its bootstrap file and each Worker's own token."""
    with (data_dir / "farm.toml").open("rb") as f:
        found = dict(tomllib.load(f))
    for identity in data_dir.glob("worker-*/worker.json"):
        found[f"token of {identity.parent.name}"] = json.loads(identity.read_text())["token"]
    return found


def modes_not_private(root: Path) -> list[str]:
    wrong = []
    for folder, dirs, files in os.walk(root):
        for name in dirs:
            mode = stat.S_IMODE(os.lstat(Path(folder) / name).st_mode)
            if mode != 0o700:
                wrong.append(f"{Path(folder) / name} {mode:o}")
        for name in files:
            path = Path(folder) / name
            info = os.lstat(path)
            if stat.S_ISREG(info.st_mode) and stat.S_IMODE(info.st_mode) != 0o600:
                wrong.append(f"{path} {stat.S_IMODE(info.st_mode):o}")
    return wrong


@pytest.mark.timeout(600)
def test_after_flamenco_up_ran_a_job_its_files_are_private_and_its_logs_hold_no_secret(
    tmp_path: Path, slow_scene: Path
) -> None:
    with UpFarm(tmp_path) as up:
        up.wait_running()
        farm = up.test_farm()
        job_id = submit(farm, slow_scene, "--preview-video")
        job = farm.wait_job(job_id, timeout=300)
        assert job.status == "completed", up.output()
        assert up.terminate() == 0, up.output()
        up_output = up.output()

    data_dir = up.data_dir
    assert (data_dir / "server" / "outputs").is_dir() and (data_dir / "worker-1").is_dir()
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
    assert modes_not_private(data_dir) == []
    client_toml = up.home / ".config" / "flamenco" / "client.toml"
    assert stat.S_IMODE(client_toml.stat().st_mode) == 0o600
    assert stat.S_IMODE(client_toml.parent.stat().st_mode) == 0o700

    secrets = secrets_of(data_dir)
    assert {"admin_password", "admin_token", "manager_token", "worker_secret"} <= set(secrets)
    assert any(name.startswith("token of worker-") for name in secrets)
    logs = {path.name: path.read_text(errors="replace") for path in (data_dir / "logs").iterdir()}
    assert {"server.log", "manager.log", "dashboard.log", "worker-1.log"} <= set(logs)
    logs["flamenco up's own output"] = up_output  # not a terminal: it could be a log file
    leaks = [
        f"{name} in {log_name}"
        for log_name, text in logs.items()
        for name, secret in secrets.items()
        if secret in text
    ]
    assert leaks == []
