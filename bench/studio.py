"""A Server for a big studio: M Managers with W simulated Workers each, one job of N frames.

    .venv/bin/python bench/studio.py [--managers 10] [--workers 200] [--frames 100000]
        [--seconds 60] [--warmup 5] [--json PATH]

A real Server and --managers real Managers (tests/farmkit, loopback, free ports, a temporary
folder; every process stopped whatever happens). One job of --frames one-frame tasks is
submitted through the API (timed: the submission's POST, the job's tasks created when it
returns). Then --workers simulated Workers per Manager (bench/dispatch.py's closed loop on
lean keep-alive connections, no render time) take tasks for --seconds after --warmup.

Reported: the submission's time; assignments per second over all Managers; the Server's CPU
(psutil cpu_times, user + system) per assignment; the first view of the job in the Dashboard
(a fresh Dashboard process, logged in: time to the job page's HTML and to the job's JSON from
the Server, each the first request after the run).

Targets (issue 15 §5): submission <= 3 s, >= 2,000 assignments/s, pages < 0.5 s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import sys
import tempfile
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
    """The Dashboard's job page (HTML) and the job's JSON, each the first request for it."""
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
    with httpx.Client(base_url=farm.server_url, timeout=120) as api:
        headers = {"Authorization": f"Bearer {farm.token}"}
        t = time.perf_counter()
        api.get(f"/api/v1/jobs/{job_id}", headers=headers).raise_for_status()
        out["job_json_s"] = round(time.perf_counter() - t, 3)
        t = time.perf_counter()
        api.get(f"/api/v1/jobs/{job_id}/tasks/page", headers=headers).raise_for_status()
        out["job_tasks_page_json_s"] = round(time.perf_counter() - t, 3)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--managers", type=int, default=10)
    parser.add_argument("--workers", type=int, default=200, help="simulated Workers per Manager")
    parser.add_argument("--frames", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=60.0, help="dispatch window")
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
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
        job_id, submit_s = submit_one_job(farm, args.frames)
        result["submit_s"] = round(submit_s, 2)
        print(f"submitted {args.frames} frames in {submit_s:.2f} s", flush=True)
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
