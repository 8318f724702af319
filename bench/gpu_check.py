"""GPU check (not a test): a real job through Server, Manager and a Worker asking for OPTIX,
then CUDA, then the CPU for comparison, on a machine with an NVIDIA GPU.

    .venv/bin/python bench/gpu_check.py [--frames 4] [--json out.json]

Needs an environment where `flamenco` and `bpy` import and Cycles lists the GPU (the Worker
asks Cycles itself; `nvidia-smi` only adds model and memory). It prints
what the Worker reported about its GPU, how long the Worker's start-up kernel compilation
took per backend (first use of a GPU generation), and each task's device and time. On a
machine without a GPU it says so and renders the CPU part only.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from farmkit import TestFarm, wait_until  # noqa: E402
from flamenco import wire  # noqa: E402
from flamenco.demo.scene import build_demo_scene  # noqa: E402
from flamenco.worker.blender import find_blender  # noqa: E402

WARMUP = re.compile(r"GPU kernels for (\w+) ready after ([\d.]+) s")


def worker_summary(farm: TestFarm) -> wire.WorkerSummary | None:
    (manager,) = [
        m
        for m in farm.api().call("GET", "/api/v1/managers", wire.ManagerList).root
        if m.name == "local"
    ]
    return manager.workers[0] if manager.workers else None


def run_job(farm: TestFarm, scene: Path, device: str, frames: int) -> dict:
    done = farm.cli("submit", str(scene), "--frames", f"1-{frames}", "--device", device, "--json")
    job_id = json.loads(done.stdout)["id"]
    started = time.monotonic()

    def settled() -> wire.Job | None:
        job = farm.job(job_id)
        return job if job.status in ("completed", "failed") or job.waiting_reason else None

    job = wait_until(settled, 3600, f"the {device} job")
    history = farm.api().call("GET", f"/api/v1/jobs/{job_id}/history", wire.TaskEventList).root
    tasks = []
    for task in farm.tasks(job_id):
        events = [e for e in history if e.task_id == task.id]
        start = next((e.at for e in events if e.status == "active"), None)
        end = next((e.at for e in reversed(events) if e.status == "completed"), None)
        seconds = (end - start).total_seconds() if start and end else None
        tasks.append(
            {
                "task": task.name,
                "worker": task.worker,
                "status": task.status,
                "device": device,
                "seconds": seconds,
            }
        )
    return {
        "device": device,
        "status": job.status,
        "waiting_reason": job.waiting_reason,
        "wall_s": round(time.monotonic() - started, 2),
        "tasks": tasks,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=4)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="flamenco-gpu-check-") as tmp,
        TestFarm(Path(tmp) / "farm") as farm,
    ):
        scene = build_demo_scene(
            find_blender(),
            Path(tmp) / "gpu.blend",
            frames=args.frames,
            resolution=(512, 288),
            samples=128,
        )
        farm.start_server()
        farm.start_manager()
        worker = farm.start_worker("gpu-worker")
        wait_until(lambda: farm.manager_online("local") and worker_summary(farm), 120, "the Worker")
        # Kernel compilation happens at the Worker's start; it can take minutes.
        wait_until(lambda: (w := worker_summary(farm)) and w.status == "awake", 1800, "GPU warm-up")
        summary = worker_summary(farm)
        assert summary is not None
        report = {
            "gpus": [g.model_dump() for g in summary.gpus],
            "kernel_compile_s": {b: float(s) for b, s in WARMUP.findall(worker.output())},
            "jobs": [],
        }
        print("Worker GPUs:", report["gpus"] or "none found")
        print("Kernel compilation at start-up (s):", report["kernel_compile_s"] or "none")
        for device in ("OPTIX", "CUDA", "CPU"):
            result = run_job(farm, scene, device, args.frames)
            report["jobs"].append(result)
            print(
                f"{device}: {result['status']} in {result['wall_s']} s"
                + (f" ({result['waiting_reason']})" if result["waiting_reason"] else "")
            )
            for task in result["tasks"]:
                print(
                    f"  {task['task']:<12} {task['worker'] or '-':<12} {task['status']:<10} "
                    f"{task['seconds'] if task['seconds'] is not None else '-'} s"
                )
        if args.json:
            args.json.write_text(json.dumps(report, indent=1, default=str))


if __name__ == "__main__":
    main()
