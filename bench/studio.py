"""A Server for a big studio: M Managers with W simulated Workers each, one job of N frames.

    .venv/bin/python bench/studio.py [--managers 10] [--workers 200] [--frames 100000]
        [--seconds 60] [--warmup 5] [--json PATH]

A real Server and --managers real Managers (tests/farmkit, loopback, free ports, a temporary
folder; every process stopped whatever happens). One job of --frames one-frame tasks is
submitted through the API (timed: the submission's POST, the job's tasks created when it
returns). Then --workers simulated Workers per Manager (bench/dispatch.py's closed loop on
lean keep-alive connections, no render time) take tasks for --seconds after --warmup.

Reported: the submission's time and the Server's CPU during it; assignments per second over
all Managers; the Server's CPU (psutil cpu_times, user + system) per assignment; the first
view of the job in the Dashboard (a fresh Dashboard process, logged in: time to the job
page's HTML, then to what its script asks for: the first tasks, the timeline, the frames;
and to the job's JSON and its first task page from the Server), each the first request
after the run.

Targets (issue 15 §5): submission <= 3 s, >= 2,000 assignments/s, pages < 0.5 s.

--big-frame MB [--check-blank] instead: one Server, one Manager, and this process as one
Worker, which takes the one task of a one-frame job and PUTs a real EXR of about MB megabytes
(random float pixels, uncompressed, written by a child process so that this one's memory
stays clean) to its Manager, streamed from disk, then reports it completed; the Manager hands
it on to the Server, which checks it (with --check-blank, its pixels too) and makes its
thumbnail. The RSS of the three processes is sampled (psutil, every
50 ms) from before the upload until the job is completed on the Server; the target is a rise
of at most 50 MB each.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import psutil
import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent))

from dispatch import Run, worker_loop
from simfarm import (
    BASIC_BLEND,
    BenchFarm,
    SimClient,
    WorkerConnection,
    completed_update,
    machine,
    percentile,
    register_workers,
    upload_blob,
)

TARGET_SUBMIT_S = 3.0
TARGET_RATE = 2000.0
TARGET_PAGE_S = 0.5


def submit_one_job(farm: BenchFarm, frames: int) -> tuple[str, float]:
    """One job of `frames` one-frame tasks; (job id, seconds of the POST)."""
    from flamenco import wire

    sha = upload_blob(farm, BASIC_BLEND)
    sub = wire.JobSubmission(
        name="studio",
        files={BASIC_BLEND.name: sha},
        settings={"blend": BASIC_BLEND.name, "frames": f"1-{frames}", "chunk_size": 1},
    )
    api = farm.api()
    t = time.perf_counter()
    job = api.call("POST", "/api/v1/jobs", wire.Job, sub)
    return job.id, time.perf_counter() - t


def server_cpu(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


async def dispatch(farm: BenchFarm, args: argparse.Namespace, server_pid: int) -> dict[str, Any]:
    runs: list[Run] = []
    tasks: list[asyncio.Task[None]] = []
    clients: list[SimClient] = []
    try:
        for m, handle in enumerate(farm.managers.values()):
            client = SimClient(handle.url)
            clients.append(client)
            creds = await register_workers(client, handle.secret, args.workers, prefix=f"m{m}")
            run = Run(args.workers)
            runs.append(run)
            for i, (name, token) in enumerate(creds):
                post = WorkerConnection(handle.url, token).post
                tasks.append(
                    asyncio.create_task(worker_loop(post, run, m * 10_000 + i, name, 10.0, 0.0))
                )
        await asyncio.sleep(args.warmup)
        w0, cpu0 = time.perf_counter(), server_cpu(server_pid)
        await asyncio.sleep(args.seconds)
        w1, cpu1 = time.perf_counter(), server_cpu(server_pid)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for client in clients:
            await client.close()
    inside = [a for run in runs for a in run.assignments if w0 <= a[0] < w1]
    per_manager = [sum(1 for a in run.assignments if w0 <= a[0] < w1) for run in runs]
    latencies = [a[1] * 1000 for a in inside]
    errors: dict[str, int] = {}
    for run in runs:
        for key, n in run.errors.items():
            errors[key] = errors.get(key, 0) + n
    return {
        "window_s": round(w1 - w0, 2),
        "assignments": len(inside),
        "assignments_per_s": round(len(inside) / (w1 - w0), 1),
        "per_manager_per_s": [round(n / (w1 - w0), 1) for n in per_manager],
        "latency_ms_p50_p99": [
            round(percentile(latencies, 50), 1),
            round(percentile(latencies, 99), 1),
        ],
        "server_cpu_ms_per_assignment": round((cpu1 - cpu0) / max(1, len(inside)) * 1000, 3),
        "server_cores_used": round((cpu1 - cpu0) / (w1 - w0), 2),
        "handed_out_twice_other_worker": sum(run.twice_other for run in runs),
        "errors": errors,
    }


def first_view(farm: BenchFarm, job_id: str) -> dict[str, float]:
    """The Dashboard's job page (HTML), then what its script asks for (its first tasks, the
    timeline, the frames), and the job's JSON, each the first request for it."""
    password = secrets.token_urlsafe(12)
    httpx.post(
        f"{farm.server_url}/api/v1/users",
        json={"name": "viewer", "password": password, "admin": True},
        headers={"Authorization": f"Bearer {farm.token}"},
        timeout=60,
    ).raise_for_status()
    url, _proc = farm.start_dashboard()
    out: dict[str, float] = {}
    with httpx.Client(base_url=url, timeout=120) as dash:
        login = dash.post(
            "/login",
            content=f"username=viewer&password={password}",
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
        if login.status_code != 303:
            raise RuntimeError(f"Dashboard login failed: HTTP {login.status_code}")
        t = time.perf_counter()
        page = dash.get(f"/jobs/{job_id}")
        out["job_page_html_s"] = round(time.perf_counter() - t, 3)
        if page.status_code != 200:
            raise RuntimeError(f"job page: HTTP {page.status_code}")
        # What the page's script asks for as it loads (the page started fetching them).
        for name, path in (("tasks", "tasks"), ("timeline", "timeline.svg"), ("frames", "frames")):
            t = time.perf_counter()
            dash.get(f"/ui/jobs/{job_id}/{path}").raise_for_status()
            out[f"job_page_{name}_s"] = round(time.perf_counter() - t, 3)
    with httpx.Client(base_url=farm.server_url, timeout=120) as api:
        headers = {"Authorization": f"Bearer {farm.token}"}
        t = time.perf_counter()
        api.get(f"/api/v1/jobs/{job_id}", headers=headers).raise_for_status()
        out["job_json_s"] = round(time.perf_counter() - t, 3)
        t = time.perf_counter()
        api.get(f"/api/v1/jobs/{job_id}/tasks/page", headers=headers).raise_for_status()
        out["job_tasks_page_json_s"] = round(time.perf_counter() - t, 3)
    return out


EXR_WRITER = """
import sys, numpy as np, OpenEXR
mb, path = float(sys.argv[1]), sys.argv[2]
width = 4096
height = max(1, int(mb * 1e6 / (width * 4 * 4)))
rgba = np.random.default_rng(1).random((height, width, 4), dtype=np.float32)
header = {"compression": OpenEXR.NO_COMPRESSION, "type": OpenEXR.scanlineimage}
OpenEXR.File(header, {"RGBA": rgba}).write(path)
"""


def make_exr(path: Path, megabytes: float) -> None:
    subprocess.run([sys.executable, "-c", EXR_WRITER, str(megabytes), str(path)], check=True)


class RssPeaks:
    """The highest RSS of some processes since start(), sampled in a thread."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.procs = {label: psutil.Process(pid) for label, pid in pids.items()}
        self.start_rss = {label: p.memory_info().rss for label, p in self.procs.items()}
        self.peak = dict(self.start_rss)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()

    def _sample(self) -> None:
        while not self.stop.wait(0.05):
            for label, proc in self.procs.items():
                with contextlib.suppress(psutil.Error):
                    self.peak[label] = max(self.peak[label], proc.memory_info().rss)

    def rise_mb(self) -> dict[str, float]:
        self.stop.set()
        self.thread.join()
        return {k: round((self.peak[k] - self.start_rss[k]) / 1e6, 1) for k in self.procs}


def big_frame(megabytes: float, check_blank: bool = False) -> dict[str, Any]:
    """One frame of `megabytes` Worker -> Manager -> Server; each process's RSS rise. With
    `check_blank`, the job asks the Server to compare the frame's pixels too."""
    from flamenco import wire
    from flamenco.blobs import sha256_file

    with (
        tempfile.TemporaryDirectory(prefix="flamenco-bigframe-") as tmp,
        BenchFarm(Path(tmp)) as farm,
    ):
        exr = Path(tmp) / "frame_000001.exr"
        make_exr(exr, megabytes)
        size, sha = exr.stat().st_size, sha256_file(exr)
        farm.start_server()
        blend = upload_blob(farm, BASIC_BLEND)
        sub = wire.JobSubmission(
            name="big-frame",
            files={BASIC_BLEND.name: blend},
            settings={
                "blend": BASIC_BLEND.name,
                "frames": "1",
                "chunk_size": 1,
                **({"check_blank": True} if check_blank else {}),
            },
        )
        job_id = farm.api().call("POST", "/api/v1/jobs", wire.Job, sub).id
        url = farm.start_manager("local")
        handle = farm.managers["local"]
        with httpx.Client(base_url=url, timeout=600) as worker:
            reg = worker.post(
                "/api/v1/workers/register",
                json={"secret": handle.secret, "name": "big", "platform": "sim", "cpu_count": 1},
            )
            reg.raise_for_status()
            auth = {"Authorization": f"Bearer {reg.json()['token']}"}
            sync = {"want_task": True, "wait_s": 30, "status": "awake", "updates": []}
            reply = worker.post("/api/v1/worker/sync", json=sync, headers=auth).json()
            task = reply["assignment"]
            if task is None:
                raise RuntimeError("the Manager handed out no task in 30 s")
            pids = {"server": farm.procs[0].pid, "manager": handle.proc.pid, "worker": os.getpid()}
            peaks = RssPeaks(pids)
            t = time.perf_counter()

            def chunks() -> Any:
                with exr.open("rb") as f:
                    while block := f.read(1 << 20):
                        yield block

            put = worker.put(
                f"/api/v1/worker/tasks/{task['task_id']}/frames/1?filename={exr.name}",
                content=chunks(),
                headers={**auth, "X-Flamenco-SHA256": sha, "Content-Length": str(size)},
            )
            if put.status_code != 201:
                raise RuntimeError(f"frame upload: HTTP {put.status_code} {put.text}")
            done = {
                **sync,
                "want_task": False,
                "updates": [completed_update(task["task_id"], "big")],
            }
            worker.post("/api/v1/worker/sync", json=done, headers=auth).raise_for_status()
            job = farm.wait_job(job_id, timeout=600)
            seconds = time.perf_counter() - t
            rise = peaks.rise_mb()
    return {
        "frame_bytes": size,
        "job_status": str(job.status),
        "upload_to_completed_s": round(seconds, 2),
        "rss_rise_mb": rise,
        "target_rise_mb": 50,
        "met": all(v <= 50 for v in rise.values()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--managers", type=int, default=10)
    parser.add_argument("--workers", type=int, default=200, help="simulated Workers per Manager")
    parser.add_argument("--frames", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=60.0, help="dispatch window")
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument(
        "--big-frame", type=float, default=0, metavar="MB", help="only the big-frame mode"
    )
    parser.add_argument(
        "--check-blank", action="store_true", help="big-frame mode: the job has check_blank"
    )
    args = parser.parse_args()
    if args.big_frame:
        result = {"machine": machine(), "big_frame": big_frame(args.big_frame, args.check_blank)}
        print(json.dumps(result["big_frame"], indent=1))
        if args.json:
            args.json.write_text(json.dumps(result, indent=1, default=str))
        return
    for flag in ("managers", "workers", "frames", "seconds"):
        if getattr(args, flag) <= 0:
            parser.error(f"--{flag} must be more than 0.")
    info = machine()
    print(f"{info['nproc']} cores, load average {info['loadavg']}", flush=True)
    result: dict[str, Any] = {"machine": info, "args": vars(args) | {"json": str(args.json)}}
    with (
        tempfile.TemporaryDirectory(prefix="flamenco-studio-") as tmp,
        BenchFarm(Path(tmp)) as farm,
    ):
        farm.start_server()
        server_pid = farm.procs[0].pid
        cpu = server_cpu(server_pid)
        job_id, submit_s = submit_one_job(farm, args.frames)
        submit_cpu_s = server_cpu(server_pid) - cpu  # what load does not stretch, unlike the wall
        result["submit_s"] = round(submit_s, 2)
        result["submit_server_cpu_s"] = round(submit_cpu_s, 2)
        print(
            f"submitted {args.frames} frames in {submit_s:.2f} s (Server CPU {submit_cpu_s:.2f} s)",
            flush=True,
        )
        farm.start_manager("local")
        for m in range(1, args.managers):
            farm.start_manager(f"studio-{m:02d}")
        result.update(uvloop.run(dispatch(farm, args, server_pid)))
        result["first_view"] = first_view(farm, job_id)
    result["loadavg_end"] = list(os.getloadavg())
    print(json.dumps({k: v for k, v in result.items() if k != "machine"}, indent=1))
    verdict = {
        "submit": result["submit_s"] <= TARGET_SUBMIT_S,
        "rate": result["assignments_per_s"] >= TARGET_RATE,
        "pages": max(result["first_view"].values()) < TARGET_PAGE_S,
    }
    print("targets met:", verdict)
    if args.json:
        args.json.write_text(json.dumps(result | {"targets_met": verdict}, indent=1, default=str))


if __name__ == "__main__":
    main()
