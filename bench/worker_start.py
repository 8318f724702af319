"""How long from `flamenco worker` to its first frame, and what its start costs in CPU.

    .venv/bin/python bench/worker_start.py --before REF [--rounds 5] [--json PATH]

One real Server and Manager (tests/farmkit.TestFarm) run for the whole benchmark. Each round
queues a one-frame job of the small demo scene (160x90, 6 samples), then starts a Worker on a
fresh data folder and times, from the start of its command:
  - registered: until the Manager lists it awake;
  - first frame: until the Server stamps the job completed (what the user waits for after
    starting a render machine);
  - CPU: the Worker's process tree (itself, its Blenders alive and those it waited for) up
    to that moment, user + system.
The Worker is then stopped. Rounds alternate between the code of --before REF (a copy of its
src/flamenco put first on the Worker's PYTHONPATH) and the working tree's code, so both see
the same machine in the same minutes. Server and Manager run the working tree's code.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from code_at import code_at  # noqa: E402  (bench/ is not a package)

from farmkit import Proc, TestFarm, wait_until  # noqa: E402
from flamenco import wire  # noqa: E402
from flamenco.demo.scene import build_demo_scene  # noqa: E402
from flamenco.worker.blender import find_blender  # noqa: E402


def tree_cpu_s(pid: int) -> float:
    """User + system seconds of a process, its live descendants and the children it reaped."""
    root = psutil.Process(pid)
    total = 0.0
    for proc in [root, *root.children(recursive=True)]:
        try:
            times = proc.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system + times.children_user + times.children_system
    return total


def one_round(
    farm: TestFarm, scene: Path, label: str, n: int, code: Path | None
) -> dict[str, float]:
    done = farm.cli("submit", str(scene), "--frames", "1", "--json")
    if done.returncode != 0:
        raise RuntimeError(done.stderr)
    job_id = json.loads(done.stdout)["id"]
    name = f"{label}-{n}"
    env = {"PYTHONPATH": str(code)} if code is not None else {}
    t0 = time.time()
    worker: Proc = farm.start_worker(name, env=env)
    wait_until(
        lambda: farm.workers_on_manager().get(name, {}).get("status") == "awake",
        120,
        f"{name} registered",
    )
    registered = time.time() - t0
    job = wait_until(lambda: (j := farm.job(job_id)).status == "completed" and j, 120, "the job")
    cpu = tree_cpu_s(worker.pid)
    first_frame = job.updated.timestamp() - t0
    frames = farm.api().call("GET", f"/api/v1/jobs/{job_id}/frames", wire.FrameList).root
    if [f.frame for f in frames] != [1]:
        raise RuntimeError(f"job {job_id} has frames {[f.frame for f in frames]}, not [1]")
    worker.stop()
    return {"registered_s": registered, "first_frame_s": first_frame, "cpu_s": cpu}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--before", required=True, help="the commit whose Worker code to compare")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    before = code_at(args.before, "worker-start-before-")
    root = Path(tempfile.mkdtemp(prefix="worker-start-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    scene = build_demo_scene(
        find_blender(), root / "scene.blend", frames=1, resolution=(160, 90), samples=6
    )
    runs: dict[str, list[dict[str, float]]] = {"before": [], "after": []}
    with TestFarm(root / "farm") as farm:
        farm.start_server()
        farm.start_manager()
        for n in range(args.rounds):
            order = ("before", "after") if n % 2 == 0 else ("after", "before")
            for label in order:
                result = one_round(farm, scene, label, n, before if label == "before" else None)
                runs[label].append(result)
                shown = ", ".join(f"{key} {value:.2f}" for key, value in result.items())
                print(f"round {n + 1} {label}: {shown}", flush=True)
    medians = {
        label: {key: statistics.median(r[key] for r in rows) for key in rows[0]}
        for label, rows in runs.items()
    }
    for key in medians["after"]:
        b, a = medians["before"][key], medians["after"][key]
        print(f"median {key}: before {b:.2f}, after {a:.2f} ({a / b:.2f}x)")
    if args.json:
        report = {
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": f"{os.cpu_count()} cores, {platform.processor() or platform.machine()}",
            "before": args.before,
            "runs": runs,
            "medians": medians,
        }
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
