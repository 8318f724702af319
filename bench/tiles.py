"""One frame over many machines: a single frame as N tiles on W Workers against one Worker
rendering the whole frame, side by side.

    .venv/bin/python bench/tiles.py [--tiles 4] [--workers 2] [--frame 1]
        [--resolution W H --samples S] [--json PATH] [--keep DIR]

The scene is the heavy demo scene (flamenco.demo.scene.build_demo_scene(heavy=True):
480x270, 15 samples, about 1 s a frame on a 2-core VM), unless --resolution and --samples
give another size. Each mode runs on a fresh farm of real processes (tests/farmkit.TestFarm:
Server, Manager, Workers with their warm Blenders), started and idle before the submission:

(whole) one Worker, `flamenco submit scene.blend --frames F`;
(tiles) --workers Workers, `flamenco submit scene.blend --frames F --tiles N`.

Each is timed from the start of the `flamenco submit` command (Python start-up, hashing and
upload count, alike in both) until the Server reports the job completed; for tiles that
includes the join. The joined frame is then checked against the whole frame, pixel for pixel:
a faster but different frame would be no result. Workers on one machine share its cores, so
on a small machine tiles measure the overhead of splitting, not a speed-up: see
docs/PERFORMANCE.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from farmkit import TestFarm, wait_until  # noqa: E402
from flamenco import wire  # noqa: E402
from flamenco.demo.scene import build_demo_scene  # noqa: E402
from flamenco.worker.blender import find_blender  # noqa: E402

POLL_S = 0.05  # how often the job's status is read: the timing's resolution


def workers_online(farm: TestFarm, count: int) -> bool:
    managers = farm.api().request("GET", "/api/v1/managers").json()
    return sum(len(m["workers"]) for m in managers if m["status"] == "online") >= count


def run_mode(blend: Path, root: Path, args: argparse.Namespace, tiles: int) -> dict[str, Any]:
    """One job on a fresh farm: its wall time and the frame it made (as pixels)."""
    workers = args.workers if tiles else 1
    with TestFarm(root) as farm:
        farm.start_server()
        farm.start_manager()
        for number in range(1, workers + 1):
            farm.start_worker(f"w{number}")
        wait_until(lambda: workers_online(farm, workers), 120, f"{workers} Workers online")
        extra = ["--tiles", str(tiles)] if tiles else []
        t0 = time.monotonic()
        done = farm.cli("submit", str(blend), "--json", "--frames", str(args.frame), *extra)
        if done.returncode != 0:
            raise RuntimeError(f"submit failed: {done.stderr[-2000:]}")
        job_id = str(json.loads(done.stdout)["id"])
        job = wait_until(
            lambda: (j := farm.job(job_id)).status in ("completed", "failed", "canceled") and j,
            1800,
            f"job {job_id} finished",
            every=POLL_S,
        )
        wall = time.monotonic() - t0
        if job.status != "completed":
            raise RuntimeError(f"job {job_id} {job.status}:\n{farm.logs()[-3000:]}")
        tasks = farm.tasks(job_id)
        dest = root / "frames"
        fetched = farm.cli("jobs", "download", job_id, str(dest))
        if fetched.returncode != 0:
            raise RuntimeError(f"download failed: {fetched.stderr[-2000:]}")
        frames = api_frames(farm, job_id)
        pixels = np.asarray(Image.open(dest / frames[0].filename))
    return {
        "mode": f"{tiles} tiles on {workers} Workers" if tiles else "whole frame on 1 Worker",
        "wall_s": round(wall, 2),
        "tasks": len(tasks),
        "pixels": pixels,
    }


def api_frames(farm: TestFarm, job_id: str) -> list[wire.FrameInfo]:
    return farm.api().call("GET", f"/api/v1/jobs/{job_id}/frames", wire.FrameList).root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tiles", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--frame", type=int, default=1)
    parser.add_argument("--resolution", type=int, nargs=2, metavar=("W", "H"))
    parser.add_argument("--samples", type=int, default=15)
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--keep", type=Path, help="keep the farms' folders here")
    args = parser.parse_args()

    root = args.keep or Path(tempfile.mkdtemp(prefix="bench-tiles-"))
    root.mkdir(parents=True, exist_ok=True)
    install = find_blender(os.environ.get("FLAMENCO_WORKER_BLENDER") or None)
    if args.resolution:
        scene = f"demo scene {args.resolution[0]}x{args.resolution[1]}, {args.samples} samples"
        blend = build_demo_scene(
            install,
            root / "scene.blend",
            frames=max(args.frame, 1),
            resolution=tuple(args.resolution),
            samples=args.samples,
            user_resources=root / "user",
        )
    else:
        scene = "heavy demo scene (480x270, 15 samples)"
        blend = build_demo_scene(
            install,
            root / "scene.blend",
            frames=max(args.frame, 1),
            heavy=True,
            user_resources=root / "user",
        )
    whole = run_mode(blend, root / "whole", args, 0)
    tiled = run_mode(blend, root / "tiles", args, args.tiles)
    same = bool(np.array_equal(whole.pop("pixels"), tiled.pop("pixels")))
    result = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}",
        "scene": scene,
        "runs": [whole, tiled],
        "tiles_over_whole": round(tiled["wall_s"] / whole["wall_s"], 2),
        "joined_equals_whole": same,
    }
    for run in result["runs"]:
        print(f"{run['mode']:<28} {run['wall_s']:>8.2f} s  ({run['tasks']} tasks)")
    print(f"tiles / whole: {result['tiles_over_whole']}; joined frame equals whole: {same}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    if not same:
        raise SystemExit("The joined frame differs from the whole frame.")


if __name__ == "__main__":
    main()
