"""Farm control: failing and lost Workers, hung renders, matching, GPUs."""

from __future__ import annotations

import json
import os
import signal
import stat
import sys
from pathlib import Path

import pytest

from farmkit import TestFarm, active_task, assert_completed_exactly_once, wait_until
from flamenco import wire

pytestmark = pytest.mark.blender

FAST_WORKER_TIMEOUT = {"FLAMENCO_MANAGER_WORKER_TIMEOUT_S": "4"}


def executable(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def submit(farm: TestFarm, scene: Path, *args: str) -> str:
    done = farm.cli("submit", str(scene), "--json", *args)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)["id"]


def workers_of(farm: TestFarm, manager: str = "local") -> dict[str, wire.WorkerSummary]:
    managers = farm.api().call("GET", "/api/v1/managers", wire.ManagerList).root
    (site,) = [m for m in managers if m.name == manager]
    return {w.name: w for w in site.workers}


def test_a_worker_whose_blender_fails_is_blocklisted_and_another_finishes(
    farm: TestFarm, slow_scene: Path, tmp_path: Path
) -> None:
    broken = executable(
        tmp_path / "broken-blender",
        (
            '#!/bin/sh\n[ "$1" = "--version" ] && { echo "Blender 5.0.1"; exit 0; }\n'
            'echo "Error: this Blender is broken on purpose"; exit 1\n'
        ),
    )
    farm.start_server()
    farm.start_manager()
    farm.start_worker("broken", env={"FLAMENCO_WORKER_BLENDER": str(broken)})
    farm.start_worker("good")
    job_id = submit(farm, slow_scene, "--frames", "1-8")

    job = assert_completed_exactly_once(farm, job_id)
    assert job.blocklist == ["broken"]
    assert {t.worker for t in farm.tasks(job_id)} == {"good"}
    log = (
        farm.api()
        .request("GET", f"/api/v1/jobs/{job_id}/tasks/{farm.tasks(job_id)[0].id}/log")
        .text
    )
    history = farm.api().call("GET", f"/api/v1/jobs/{job_id}/history", wire.TaskEventList).root
    failures = [e for e in history if e.status == "failed" and e.worker == "broken"]
    assert len(failures) >= 3
    assert "broken on purpose" in log or any(
        "broken on purpose"
        in farm.api().request("GET", f"/api/v1/jobs/{job_id}/tasks/{e.task_id}/log").text
        for e in failures
    )


def test_a_frozen_worker_is_declared_lost_and_its_task_completes_elsewhere(
    farm: TestFarm, slow_scene: Path
) -> None:
    farm.start_server()
    farm.start_manager(env=FAST_WORKER_TIMEOUT)
    workers = {name: farm.start_worker(name) for name in ("w-a", "w-b")}
    job_id = submit(farm, slow_scene, "--frames", "1-8", "--chunk", "2")
    frozen_task = wait_until(lambda: active_task(farm, job_id), 120, "a task being rendered")
    frozen = workers[frozen_task.worker or ""]
    frozen.signal(signal.SIGSTOP)
    try:
        wait_until(
            lambda: workers_of(farm)[frozen.label].status == "offline",
            60,
            "the frozen Worker declared offline",
        )
        assert_completed_exactly_once(farm, job_id)
    finally:
        frozen.signal(signal.SIGCONT)
    (task,) = [t for t in farm.tasks(job_id) if t.id == frozen_task.id]
    assert task.worker != frozen.label
    # Back again, it re-syncs: awake, and its stale task is not reported twice.
    wait_until(lambda: workers_of(farm)[frozen.label].status == "awake", 60, "the Worker back")
    assert_completed_exactly_once(farm, job_id)


def test_a_render_without_any_sign_of_life_is_stopped_and_retried(
    farm: TestFarm, endless_scene: Path
) -> None:
    farm.start_server()
    farm.start_manager()
    farm.start_worker("w1", env={"FLAMENCO_WORKER_HUNG_TIMEOUT_S": "4"})
    job_id = submit(farm, endless_scene, "--frames", "1")
    job = farm.wait_job(job_id, timeout=180)
    assert job.status == "failed"
    (task,) = farm.tasks(job_id)
    assert task.failure_count == 3  # tried again each time, then given up
    log = farm.api().request("GET", f"/api/v1/jobs/{job_id}/tasks/{task.id}/log").text
    assert "showed no sign of life for 4 s and was stopped" in log


def test_tags_and_minimum_versions_choose_the_workers(farm: TestFarm, demo_scene: Path) -> None:
    farm.start_server()
    farm.start_manager()
    farm.start_worker("plain")
    farm.start_worker("tagged", env={"FLAMENCO_WORKER_TAGS": "fast, big"})
    wait_until(lambda: len(workers_of(farm)) == 2, 60, "both Workers registered")
    assert workers_of(farm)["tagged"].tags == ["fast", "big"]

    tagged_job = submit(farm, demo_scene, "--frames", "1-6", "--tag", "big")
    assert farm.wait_job(tagged_job).status == "completed", farm.logs()
    assert {t.worker for t in farm.tasks(tagged_job)} == {"tagged"}

    future_job = submit(farm, demo_scene, "--frames", "1", "--min-blender", "99.0")
    version = workers_of(farm)["plain"].blender_version
    reason = (
        "Waiting: the job needs Blender 99.0 or newer, "
        f"and the Workers online have Blender {version}."
    )
    wait_until(lambda: farm.job(future_job).waiting_reason == reason, 30, "the waiting reason")
    assert farm.job(future_job).status == "queued"
    assert reason in farm.cli("jobs", "show", future_job).stdout.replace("\n", " ")


def test_gpu_jobs_go_to_gpu_workers_and_fail_loudly_without_the_device(
    farm: TestFarm, demo_scene: Path, tmp_path: Path
) -> None:
    # This machine has no GPU, so two stand-ins play the GPU's part (and only that): an
    # nvidia-smi listing two cards, and a bpy runtime that, asked for Cycles' devices, answers
    # that Cycles sees card 1 with OptiX and CUDA. Everything else, the render included, is the
    # real bpy, which then refuses the device as it would on a machine with a broken driver.
    fake_bin = tmp_path / "fake-bin"
    executable(
        fake_bin / "nvidia-smi",
        ('#!/bin/sh\necho "0, NVIDIA Stand-In A, 24576"\necho "1, NVIDIA Stand-In B, 81559"\n'),
    )
    card = "CUDA_NVIDIA Stand-In B_0000:02:00"
    devices = json.dumps(
        {
            "event": "devices",
            "devices": [
                {"backend": "OPTIX", "name": "NVIDIA Stand-In B", "id": f"{card}_OptiX"},
                {"backend": "CUDA", "name": "NVIDIA Stand-In B", "id": card},
            ],
        }
    )
    runtime = executable(
        fake_bin / "bpy-with-a-gpu",
        "#!/bin/sh\n"
        # Asked by the Worker's first Blender on standby: it names the card, then goes on
        # as the real Blender on standby.
        'case "$*" in *--list-devices*)\n'
        f"  printf '\\n@@FLAMENCO@@ %s\\n' '{devices}'\n"
        '  for a in "$@"; do shift; [ "$a" = --list-devices ] || set -- "$@" "$a"; done;;\n'
        "esac\n"
        f'exec "{sys.executable}" "$@"\n',
    )
    with_gpu = {"PATH": f"{fake_bin}{os.pathsep}{os.environ['PATH']}"}
    farm.start_server()
    farm.start_manager()
    farm.start_worker("cpu-only")
    farm.start_worker(
        "gpu-1",
        env={**with_gpu, "FLAMENCO_WORKER_GPU": "1"},
        args=["--blender", str(runtime)],
    )
    wait_until(lambda: len(workers_of(farm)) == 2, 60, "both Workers registered")
    (gpu,) = workers_of(farm)["gpu-1"].gpus  # pinned to one of the two GPUs
    assert (gpu.index, gpu.model, gpu.memory_mb) == (1, "NVIDIA Stand-In B", 81559)
    assert gpu.backends == ["OPTIX", "CUDA"]
    assert workers_of(farm)["cpu-only"].gpus == []

    job_id = submit(farm, demo_scene, "--frames", "1-2", "--device", "OPTIX")
    # Blender refuses OptiX on the GPU Worker, with its reason; that Worker stops offering
    # OptiX, so the job waits for one that has it. The CPU-only Worker never gets it, and
    # nothing renders on a CPU.
    wait_until(lambda: "OPTIX" in (farm.job(job_id).waiting_reason or ""), 120, "the job to wait")
    assert "OPTIX" not in workers_of(farm)["gpu-1"].gpus[0].backends
    assert farm.job(job_id).frames_done == 0
    history = farm.api().call("GET", f"/api/v1/jobs/{job_id}/history", wire.TaskEventList).root
    assert {e.worker for e in history} - {None} == {"gpu-1"}
    task = next(t for t in farm.tasks(job_id) if t.failure_count > 0)
    log = farm.api().request("GET", f"/api/v1/jobs/{job_id}/tasks/{task.id}/log").text
    assert "Found no Cycles device of type OPTIX" in log


def test_a_sleeping_worker_takes_no_work_until_woken(farm: TestFarm, demo_scene: Path) -> None:
    farm.start_server()
    farm.start_manager()
    farm.start_worker("sleepy")
    wait_until(lambda: "sleepy" in workers_of(farm), 60, "the Worker registered")
    slept = farm.api().request("POST", "/api/v1/managers/local/workers/sleepy/sleep")
    assert slept.json() == {"status": "asleep"}
    wait_until(lambda: workers_of(farm)["sleepy"].status == "asleep", 30, "the Worker asleep")

    job_id = submit(farm, demo_scene, "--frames", "1-2")
    reason = "Waiting for a Worker to come online."
    wait_until(lambda: farm.job(job_id).waiting_reason == reason, 30, "the job waiting")
    assert farm.job(job_id).frames_done == 0

    farm.api().request("POST", "/api/v1/managers/local/workers/sleepy/wake")
    assert farm.wait_job(job_id).status == "completed"
    stats = workers_of(farm)["sleepy"]
    assert stats.status == "awake" and stats.cpu_count > 0 and stats.memory_used_mb > 0
