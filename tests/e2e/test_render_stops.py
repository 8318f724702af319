"""Job actions reach the running Blender: Server -> Manager -> Worker."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from farmkit import TestFarm, process_gone, wait_until

pytestmark = pytest.mark.blender

STOP_BOUND_S = 5.0  # the promise: a running render stops within 5 s of a cancel or pause


def rendering_pid(farm: TestFarm, job_id: str) -> int | None:
    for task in farm.tasks(job_id):
        if task.status == "active" and task.blender_pid and task.activity.startswith("frame"):
            return task.blender_pid
    return None


@pytest.mark.parametrize("action", ["cancel", "pause"])
def test_an_action_stops_the_running_render_within_five_seconds(
    farm: TestFarm, endless_scene: Path, action: str
) -> None:
    farm.start_server()
    farm.start_manager()
    farm.start_worker("w1")
    submitted = farm.cli("submit", str(endless_scene), "--frames", "1-2", "--json")
    job_id = json.loads(submitted.stdout)["id"]
    pid = wait_until(lambda: rendering_pid(farm, job_id), 120, "Blender sampling a frame")

    started = time.monotonic()
    acted = farm.cli("jobs", action, job_id)
    assert acted.returncode == 0, acted.stderr
    wait_until(lambda: process_gone(pid), 30, f"Blender {pid} to stop")
    assert time.monotonic() - started < STOP_BOUND_S

    expected = "canceled" if action == "cancel" else "paused"
    assert farm.job(job_id).status == expected
    assert {t.status for t in farm.tasks(job_id)} == {expected}


def test_a_resumed_job_renders_the_remaining_frames(farm: TestFarm, demo_scene: Path) -> None:
    farm.start_server()
    submitted = farm.cli("submit", str(demo_scene), "--frames", "1-4", "--json")
    job_id = json.loads(submitted.stdout)["id"]
    assert farm.cli("jobs", "pause", job_id).returncode == 0
    farm.start_manager()
    farm.start_worker("w1")
    refused = farm.cli("jobs", "pause", job_id)
    assert refused.returncode != 0 and "cannot pause" in refused.stderr
    assert farm.cli("jobs", "resume", job_id).returncode == 0
    assert farm.wait_job(job_id).status == "completed"
    assert farm.job(job_id).frames_done == 4

    assert farm.cli("jobs", "delete", job_id).returncode == 0
    assert farm.cli("jobs", "list", "--json").stdout.strip() == "[]"
    assert not any((farm.root / "server" / "outputs").iterdir())
