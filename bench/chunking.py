"""Chunks sized by time against fixed chunks: wall time and tasks of one job, side by side.

    .venv/bin/python bench/chunking.py [--frames 600] [--workers 2] [--low-s 0.05]
        [--high-s 0.5] [--task-seconds 10] [--fixed 1,10,50] [--json PATH]
    .venv/bin/python bench/chunking.py --quick     # 60 frames, costs /10: does it work?

A real Server and a real Manager run as processes (tests/farmkit.TestFarm via
simfarm.BenchFarm); --workers simulated Workers live in this process and work like real ones
without Blender (simfarm.WorkerConnection, as bench/soak.py): sync for a task, report it
active, *sleep* the cost of each of its frames, PUT a tiny real PNG per frame, and carry
`completed` on the next sync. Frame n of N costs low + (high - low) * (n - 1) / (N - 1)
seconds: a shot that gets dearer along its range. A sleep costs no CPU, so the machine's
load (other engineers' work) shows in the farm's overhead, not in the renders.

One job per mode, one after another on the same farm: `--chunk N` for each of --fixed, then
`--chunk auto --task-seconds S`. For each: the wall time from the submission to the job
completed, the tasks it ended with, and the ideal (the frames' total cost / Workers). What a
task costs besides its frames here is a sync and a few small requests; a real Worker also
loads the file in Blender for a new job, so fixed chunks of 1 look better here than on a farm.

`--model` adds, without a farm, a discrete-event model of the same job (the Workers, the
per-task overhead --overhead-s, the costs), re-planned by `core/chunking.py` and by a model of
AWS Deadline Cloud's adaptive chunking (`targetRuntimeSeconds`): after each completion the
queued frames are cut into chunks of target / (mean seconds per frame of the completed
chunks), with no trend and no shrinking at the end. The same model runs the fixed chunks.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent))
from simfarm import BASIC_BLEND, BenchFarm, machine, new_update_id, upload_blob
from soak import SoakConnection, register, tiny_png


def frame_cost(frame: int, args: argparse.Namespace) -> float:
    return args.low_s + (args.high_s - args.low_s) * (frame - 1) / max(1, args.frames - 1)


def _update(task_id: str, worker: str, status: str) -> dict[str, Any]:
    return {
        "update_id": new_update_id(),
        "task_id": task_id,
        "status": status,
        "progress": 1.0 if status == "completed" else 0.0,
        "activity": status,
        "worker": worker,
        "log": [],
    }


async def worker_loop(conn: SoakConnection, name: str, args: argparse.Namespace) -> None:
    warm: str | None = None
    carried: list[dict[str, Any]] = []
    while True:
        body = {"want_task": True, "wait_s": 10, "warm_job_id": warm, "updates": carried}
        status, reply = await conn.post("/api/v1/worker/sync", body)
        if status != 200:
            raise RuntimeError(f"{name}: sync answered HTTP {status}: {reply}")
        carried = []
        assignment = reply.get("assignment")
        if assignment is None:
            continue
        task_id, warm = assignment["task_id"], assignment["job_id"]
        status, _ = await conn.post(
            "/api/v1/worker/updates", {"updates": [_update(task_id, name, "active")]}
        )
        for frame in assignment["frames"]:
            await asyncio.sleep(frame_cost(frame, args))  # the render
            png = tiny_png(frame + (hash(task_id) & 0xFFF) * 4096)
            path = f"/api/v1/worker/tasks/{task_id}/frames/{frame}?filename=frame_{frame:06d}.png"
            put = await conn.put_frame(path, png, hashlib.sha256(png).hexdigest())
            if put != 201:
                raise RuntimeError(f"{name}: frame {frame} answered HTTP {put}")
        carried = [_update(task_id, name, "completed")]


# ---- the model (no farm) ------------------------------------------------------------------


def _mean_rate_plan(frames: list[int], done: list[Any], target: float) -> list[tuple[int, ...]]:
    """Our model of targetRuntimeSeconds: one chunk size from the mean seconds per frame."""
    per_frame = sum(d.seconds for d in done) / sum(len(d.frames) for d in done)
    size = max(1, int(target / per_frame))
    return [tuple(frames[i : i + size]) for i in range(0, len(frames), size)]


def model(mode: str, args: argparse.Namespace) -> dict[str, Any]:
    """Wall time and tasks of the job in the model: Workers take the first queued task, run
    it for the overhead plus its frames' costs; each completion re-plans the queue."""
    from flamenco.core.chunking import DoneTask, rechunk

    frames = list(range(1, args.frames + 1))
    size = 1 if mode in ("auto", "mean-rate") else int(mode)
    queue = [tuple(frames[i : i + size]) for i in range(0, len(frames), size)]
    free_at = [0.0] * args.workers
    running: list[tuple[float, int, tuple[int, ...], float]] = []  # end, worker, frames, start
    done: list[DoneTask] = []
    tasks = len(queue)
    now = 0.0
    while queue or running:
        for worker in range(args.workers):
            if queue and free_at[worker] <= now and all(r[1] != worker for r in running):
                chunk = queue.pop(0)
                seconds = args.overhead_s + sum(frame_cost(f, args) for f in chunk)
                running.append((now + seconds, worker, chunk, now))
        running.sort()
        end, worker, chunk, start = running.pop(0)
        now = free_at[worker] = end
        done.append(DoneTask(chunk, end - start, f"w{worker}"))
        if queue and mode in ("auto", "mean-rate"):
            left = [f for task in queue for f in task]
            plan = (
                rechunk(queue, done, args.task_seconds)
                if mode == "auto"
                else _mean_rate_plan(left, done, args.task_seconds)
            )
            if plan is not None and plan != queue:
                tasks += len(plan) - len(queue)
                queue = plan
    label = {"auto": "auto", "mean-rate": "mean rate (targetRuntimeSeconds model)"}.get(mode, mode)
    return {"chunk": label, "model_wall_s": round(now, 2), "tasks": tasks}


def run_job(farm: BenchFarm, sha: str, chunk: str, args: argparse.Namespace) -> dict[str, Any]:
    """Submit one job of --frames frames with this chunk mode; wait until it completes."""
    from flamenco import wire

    settings: dict[str, Any] = {
        "blend": BASIC_BLEND.name,
        "frames": f"1-{args.frames}",
        "chunk_size": chunk if chunk == "auto" else int(chunk),
    }
    if chunk == "auto":
        settings["task_seconds"] = args.task_seconds
    api = farm.api()
    sub = wire.JobSubmission(
        name=f"chunk-{chunk}", files={BASIC_BLEND.name: sha}, settings=settings
    )
    t0 = time.monotonic()
    job = api.call("POST", "/api/v1/jobs", wire.Job, sub)
    first_plan = job.tasks_total
    give_up = t0 + 600 + 10 * sum(frame_cost(f, args) for f in range(1, args.frames + 1))
    while (job := api.call("GET", f"/api/v1/jobs/{job.id}", wire.Job)).status != "completed":
        if job.status in ("failed", "canceled"):
            raise RuntimeError(f"job {job.id} ({chunk}) {job.status}")
        if time.monotonic() > give_up:
            raise RuntimeError(f"job {job.id} ({chunk}) did not complete in time")
        time.sleep(0.05)  # the wall time is this fine
    wall = time.monotonic() - t0
    tasks = api.call("GET", f"/api/v1/jobs/{job.id}/tasks", wire.TaskList).root
    frames = [f for task in tasks for f in task.frames]
    assert frames == list(range(1, args.frames + 1)), "frames lost, repeated or out of order"
    stored = api.call("GET", f"/api/v1/jobs/{job.id}/frames", wire.FrameList).root
    assert [f.frame for f in stored] == frames, "a frame of a completed task never arrived"
    sizes = sorted(len(task.frames) for task in tasks)
    return {
        "chunk": chunk if chunk != "auto" else f"auto {args.task_seconds:g} s",
        "wall_s": round(wall, 2),
        "tasks": len(tasks),
        "first_plan_tasks": first_plan,
        "frames_per_task": f"{sizes[0]}-{sizes[-1]}",
    }


async def drive(farm: BenchFarm, args: argparse.Namespace) -> list[dict[str, Any]]:
    assert farm.secrets is not None and farm.manager_url
    loop = asyncio.get_running_loop()
    creds = await register(farm.manager_url, farm.secrets.worker_secret, args.workers)
    workers = [
        asyncio.create_task(worker_loop(SoakConnection(farm.manager_url, token), name, args))
        for name, token in creds
    ]
    sha = await loop.run_in_executor(None, upload_blob, farm, BASIC_BLEND)
    results = []
    try:
        for chunk in [*args.fixed.split(","), "auto"]:
            job = loop.run_in_executor(None, run_job, farm, sha, chunk.strip(), args)
            done, _ = await asyncio.wait([job, *workers], return_when=asyncio.FIRST_COMPLETED)
            for task in done:  # a Worker that stopped ends the run: its numbers would lie
                task.result()
            result = await job
            print(json.dumps(result), flush=True)
            results.append(result)
    finally:
        for task in workers:
            task.cancel()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=600)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--low-s", type=float, default=0.05, help="the first frame's cost")
    parser.add_argument("--high-s", type=float, default=0.5, help="the last frame's cost")
    parser.add_argument("--task-seconds", type=float, default=10.0, help="for --chunk auto")
    parser.add_argument("--fixed", default="1,10,50", help="fixed chunk sizes to compare")
    parser.add_argument("--quick", action="store_true", help="60 frames, costs /10")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--model", action="store_true", help="also the model, without a farm")
    parser.add_argument("--model-only", action="store_true", help="only the model")
    parser.add_argument("--overhead-s", type=float, default=0.08, help="per task, in the model")
    args = parser.parse_args()
    if args.quick:
        args.frames, args.low_s, args.high_s, args.task_seconds = 60, 0.005, 0.05, 1.0
    ideal = sum(frame_cost(f, args) for f in range(1, args.frames + 1)) / args.workers
    if args.model or args.model_only:
        print("\nmodel (no farm): overhead", args.overhead_s, "s per task\n")
        print("| chunk | model wall s | vs ideal | tasks |")
        print("|---|---|---|---|")
        for mode in [*args.fixed.split(","), "mean-rate", "auto"]:
            r = model(mode.strip(), args)
            print(
                f"| {r['chunk']} | {r['model_wall_s']:.1f} | {r['model_wall_s'] / ideal:.2f}x "
                f"| {r['tasks']} |"
            )
        if args.model_only:
            return
    info = machine()
    print(json.dumps({"machine": info, "ideal_wall_s": round(ideal, 2)}), flush=True)
    root = Path(tempfile.mkdtemp(prefix="flamenco-chunking-"))
    try:
        with BenchFarm(root) as farm:
            farm.start_server()
            farm.start_manager()
            results = uvloop.run(drive(farm, args))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"\n{args.frames} frames, {args.low_s}-{args.high_s} s each, {args.workers} Workers;")
    print(f"ideal wall time {ideal:.1f} s\n")
    print("| chunk | wall s | vs ideal | tasks (first plan) | frames per task |")
    print("|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['chunk']} | {r['wall_s']:.1f} | {r['wall_s'] / ideal:.2f}x "
            f"| {r['tasks']} ({r['first_plan_tasks']}) | {r['frames_per_task']} |"
        )
    if args.json:
        args.json.write_text(json.dumps({"machine": info, "ideal": ideal, "results": results}))


if __name__ == "__main__":
    main()
