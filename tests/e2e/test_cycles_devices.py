"""Through a real farm: what Cycles sees is what a Worker offers, and persistent data is the
job's choice (the same pixels either way)."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image, ImageChops

from farmkit import TestFarm, wait_until
from flamenco import wire


def _submit(farm: TestFarm, scene: Path, *options: str) -> str:
    done = farm.cli("submit", str(scene), "--frames", "1-3", "--chunk", "3", "--json", *options)
    assert done.returncode == 0, done.stderr + farm.logs()
    return json.loads(done.stdout)["id"]


def _task_log(farm: TestFarm, job_id: str) -> str:
    (task,) = farm.tasks(job_id)
    return farm.api().request("GET", f"/api/v1/jobs/{job_id}/tasks/{task.id}/log").text


def test_a_hip_job_waits_saying_why_and_persistent_data_is_the_jobs_choice(
    farm: TestFarm, demo_scene: Path, tmp_path: Path
) -> None:
    farm.start_server()
    farm.start_manager()
    farm.start_worker("cpu-only")

    hip_job = _submit(farm, demo_scene, "--device", "HIP")
    reason = "Waiting: the job needs a Worker with a HIP GPU, and no Worker online has that."
    wait_until(lambda: farm.job(hip_job).waiting_reason == reason, 120, "the HIP job waiting")
    managers = farm.api().call("GET", "/api/v1/managers", wire.ManagerList).root
    (worker,) = [w for m in managers for w in m.workers]
    assert worker.gpus == []  # Cycles in this machine's Blender lists no GPU

    kept = _submit(farm, demo_scene)
    rebuilt = _submit(farm, demo_scene, "--no-persistent-data")
    for job_id in (kept, rebuilt):
        assert farm.wait_job(job_id).status == "completed", farm.logs()
    assert "Flamenco: Cycles persistent data on" in _task_log(farm, kept)
    assert "Flamenco: Cycles persistent data off" in _task_log(farm, rebuilt)

    frames = {}
    for job_id in (kept, rebuilt):
        dest = tmp_path / job_id
        assert farm.cli("jobs", "download", job_id, str(dest)).returncode == 0
        frames[job_id] = sorted(dest.rglob("*.png"))
    assert len(frames[kept]) == len(frames[rebuilt]) == 3
    for a, b in zip(frames[kept], frames[rebuilt], strict=True):
        assert a.name == b.name
        with Image.open(a) as left, Image.open(b) as right:
            assert (
                ImageChops.difference(left.convert("RGBA"), right.convert("RGBA")).getbbox() is None
            )
    assert farm.job(hip_job).status == "queued"  # still waiting, nothing lost
