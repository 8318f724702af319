"""How fast are the Dashboard's pages with a job of 10,000 tasks and a farm of 500 Workers?

    .venv/bin/python bench/dashboard_pages.py [--tasks 10000] [--workers 500] [--repeat 5]
        [--json PATH] [--keep DIR]

The data is made directly through the Server's services on a temporary data folder: one job
of frames 1-N with chunk 1 (N tasks), half of them completed with a history (an `active` and
a `completed` report each, spread over the Workers) and a rendered frame each, 100 active,
the rest queued; 20 small jobs beside it; one Manager row reporting 500 Workers with CPU,
memory and GPU figures. Then a real Server and a real Dashboard run as processes (as under
`flamenco up`), and this script, logged in to the Dashboard, times what a browser asks for:

- each page's HTML (rendered on the server, with the data it embeds), and
- the JSON and SVG the page's script then fetches, all at once, as a browser does.

"page ready" is the HTML plus the slowest of those fetches: the time until the page shows
everything. The pages are opened one after the other, 2 s apart (a person looks at a page
before opening the next), in three situations:

- first: a Dashboard just started, with nothing in its memory (a new process each run);
- revisit: the Dashboard's answers are older than its 3 s cache, so it shows them at once
  and asks the Server again in the background (stale-while-revalidate; the page asks again
  a second later and live events bring the changes);
- warm: the answers are recent (paging through tasks, refreshes without a change).

Medians of --repeat runs; the limit is 0.5 s. The "first" numbers of a big job are bounded by
the Server's own endpoints that the job page needs (a page of tasks, the runs of the timeline,
the frames): the script also times those directly, and beside them the endpoints that give
all tasks and the whole history at once (which the Dashboard no longer asks for).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import platform
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import insert, select, update

from flamenco import wire
from flamenco.config import ServerSettings
from flamenco.db import utcnow
from flamenco.server.models import AppliedUpdate, ManagerRow, OutputRow, TaskRow
from flamenco.server.services import build_services

LIMIT_S = 0.5
CACHE_AGE_S = 3.0  # JobCache.max_age_s in flamenco/dashboard/upstream.py
PASSWORD = "bench-password"
THINK_S = 2.0  # between two pages, as a person looks at one before opening the next


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---- data ----------------------------------------------------------------------------------


def make_data(data_dir: Path, n_tasks: int, n_workers: int) -> str:
    """Fill a Server data folder; returns the big job's id."""
    svc = build_services(ServerSettings(data_dir=data_dir))
    try:
        svc.auth.create_user("admin", PASSWORD, admin=True)
        scene = data_dir / "scene.blend"
        scene.write_bytes(b"BLENDER-v405REND" + bytes(200))
        sha = svc.blobs.put_file(scene)

        def submit(name: str, frames: str, chunk: int) -> wire.Job:
            settings = {"blend": "s.blend", "frames": frames, "chunk_size": chunk}
            sub = wire.JobSubmission(name=name, files={"s.blend": sha}, settings=settings)
            return svc.jobs.submit(sub, submitter="admin")

        for i in range(20):
            submit(f"shot {i:02d}", "1-100", 10)
        big = submit("big job", f"1-{n_tasks}", 1)
        svc.auth.create_manager("farm")
        workers = [f"render-{i:03d}" for i in range(n_workers)]
        start = utcnow() - timedelta(hours=2)
        with svc.jobs.sessions.begin() as s:
            manager_id = s.scalar(select(ManagerRow.id).where(ManagerRow.name == "farm"))
            rows = s.execute(
                select(TaskRow.id, TaskRow.index, TaskRow.frames)
                .where(TaskRow.job_id == big.id)
                .order_by(TaskRow.index)
            ).all()
            done, active = rows[: n_tasks // 2], rows[n_tasks // 2 : n_tasks // 2 + 100]
            history, outputs = [], []
            for task_id, index, frames in done:
                worker = workers[index % n_workers]
                began = start + timedelta(seconds=index * 0.5)
                for status, at in (("active", began), ("completed", began + timedelta(seconds=40))):
                    history.append(
                        {
                            "update_id": secrets.token_hex(12),
                            "task_id": task_id,
                            "outcome": "applied",
                            "status": status,
                            "worker": worker,
                            "manager_id": manager_id,
                            "received": at,
                        }
                    )
                outputs.append(
                    {
                        "job_id": big.id,
                        "task_id": task_id,
                        "frame": frames[0],
                        "sha256": hashlib.sha256(str(index).encode()).hexdigest(),
                        "size": 2_000_000,
                        "width": 1920,
                        "height": 1080,
                        "filename": f"frame_{frames[0]:06d}.png",
                    }
                )
            for task_id, index, _ in active:
                history.append(
                    {
                        "update_id": secrets.token_hex(12),
                        "task_id": task_id,
                        "outcome": "applied",
                        "status": "active",
                        "worker": workers[index % n_workers],
                        "manager_id": manager_id,
                        "received": utcnow() - timedelta(seconds=20),
                    }
                )
            s.execute(insert(AppliedUpdate), history)
            s.execute(insert(OutputRow), outputs)
            s.execute(
                update(TaskRow),
                [
                    {
                        "id": task_id,
                        "status": "completed",
                        "progress": 1.0,
                        "activity": "done",
                        "manager_id": manager_id,
                        "worker": workers[index % n_workers],
                    }
                    for task_id, index, _ in done
                ]
                + [
                    {
                        "id": task_id,
                        "status": "active",
                        "progress": 0.4,
                        "activity": "frame: sample 40/100",
                        "manager_id": manager_id,
                        "worker": workers[index % n_workers],
                    }
                    for task_id, index, _ in active
                ],
            )
            s.execute(
                update(ManagerRow)
                .where(ManagerRow.id == manager_id)
                .values(
                    last_seen=utcnow(),
                    address="10.0.0.2",
                    workers=[summary(name, i, active) for i, name in enumerate(workers)],
                )
            )
        from flamenco.server.transitions import refresh_job_status

        with svc.jobs.sessions.begin() as s:
            refresh_job_status(s, big.id)
        return big.id
    finally:
        svc.close()


def summary(name: str, i: int, active: list[Any]) -> dict[str, Any]:
    busy = i < len(active)
    return wire.WorkerSummary(
        name=name,
        status="awake" if i % 25 else "asleep",
        task_id=active[i].id if busy else None,
        blender_version="5.0.1",
        tags=["gpu"] if i % 2 else [],
        gpus=[
            wire.GpuInfo(
                index=0,
                vendor="NVIDIA",
                model="RTX 4090",
                memory_mb=24564,
                backends=["CUDA", "OPTIX"],
            )
        ]
        if i % 2
        else [],
        last_seen=utcnow(),
        platform="Linux-6.8-x86_64",
        cpu_count=32,
        memory_mb=131072,
        cpu_percent=97.0 if busy else 2.0,
        memory_used_mb=40000,
        progress=0.4 if busy else 0.0,
        activity="frame: sample 40/100" if busy else "",
    ).model_dump(mode="json")


# ---- processes -------------------------------------------------------------------------------


def start(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as sink:
        return subprocess.Popen(
            [sys.executable, "-m", "flamenco", *args],
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, "XDG_CONFIG_HOME": str(log.parent / "config")},
        )


def wait_http(url: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{url} exited during start-up")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/api/v1/version", timeout=2).status_code == 200:
                return
        time.sleep(0.1)
    raise SystemExit(f"{url} did not start")


def start_dashboard(server_url: str, root: Path) -> tuple[str, subprocess.Popen[bytes]]:
    port = free_port()
    proc = start(["dashboard", "--server", server_url, "--port", str(port)], root / "dashboard.log")
    url = f"http://127.0.0.1:{port}"
    wait_http(url, proc)
    return url, proc


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# ---- timing --------------------------------------------------------------------------------


async def timed(client: httpx.AsyncClient, path: str) -> float:
    started = time.perf_counter()
    response = await client.get(path)
    await response.aread()
    elapsed = time.perf_counter() - started
    if response.status_code != 200:
        raise SystemExit(f"{path}: HTTP {response.status_code} {response.text[:300]}")
    return elapsed


async def page_load(client: httpx.AsyncClient, html: str, fetches: list[str]) -> dict[str, float]:
    """The HTML, then every fetch of the page's script at once, as a browser does."""
    times = {html: await timed(client, html)}
    results = await asyncio.gather(*(timed(client, path) for path in fetches))
    times.update(zip(fetches, results, strict=True))
    times["page ready"] = times[html] + max(results, default=0.0)
    return times


async def log_in(client: httpx.AsyncClient) -> None:
    answer = await client.post(
        "/login",
        content=f"username=admin&password={PASSWORD}",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert answer.status_code == 303, answer.text


def pages_of(job_id: str) -> dict[str, tuple[str, list[str]]]:
    base = f"/ui/jobs/{job_id}"
    tasks = f"{base}/tasks?offset=0&limit=100"
    return {
        "jobs": ("/", []),
        "job": (
            f"/jobs/{job_id}",
            [tasks, f"/ui/jobs/{job_id}/frames", f"/ui/jobs/{job_id}/timeline.svg"],
        ),
        "machines": ("/machines", []),
    }


Results = dict[str, dict[str, list[float]]]


async def measure(url: str, job_id: str, mode: str, results: Results) -> None:
    """One run of every page; `revisit` first waits until the Dashboard's answers are old."""
    others = {
        "jobs JSON (live refresh)": "/ui/jobs",
        "tasks JSON, last page of the completed": (
            f"/ui/jobs/{job_id}/tasks?offset=4900&limit=100&status=completed"
        ),
        "machines JSON (live refresh)": "/ui/managers",
    }
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        await log_in(client)
        if mode == "revisit":
            await asyncio.sleep(CACHE_AGE_S + 0.3)
        for label, (html, fetches) in pages_of(job_id).items():
            await asyncio.sleep(THINK_S)  # background refreshes of the last page settle
            for key, value in (await page_load(client, html, fetches)).items():
                short = "HTML" if key == html else key.split("?")[0].rsplit("/", 1)[-1]
                name = f"{label}: {short}"
                results.setdefault(name, {}).setdefault(mode, []).append(value)
        if mode != "first":
            for label, path in others.items():
                results.setdefault(label, {}).setdefault(mode, []).append(await timed(client, path))


def server_direct(server_url: str, job_id: str, repeat: int, results: Results) -> None:
    """The Server's own endpoints that a first view waits for, asked directly."""
    token = httpx.post(
        f"{server_url}/api/v1/login", json={"username": "admin", "password": PASSWORD}
    ).json()["token"]
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=server_url, headers=headers, timeout=60) as client:
        job = f"jobs/{job_id}"
        for path in (
            "jobs",
            job,
            f"{job}/tasks/page",
            f"{job}/runs",
            f"{job}/frames",
            f"{job}/tasks",
            f"{job}/history",
        ):
            for _ in range(repeat):
                started = time.perf_counter()
                client.get(f"/api/v1/{path}").raise_for_status()
                name = f"Server API alone: {path.replace(job_id, 'JOB')}"
                results.setdefault(name, {}).setdefault("first", []).append(
                    time.perf_counter() - started
                )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--keep", type=Path, help="Keep the data folder and logs here.")
    args = parser.parse_args()

    root = Path(args.keep or tempfile.mkdtemp(prefix="flamenco-dash-bench-"))
    root.mkdir(parents=True, exist_ok=True)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        made = time.perf_counter()
        job_id = make_data(root / "server", args.tasks, args.workers)
        print(f"Data made in {time.perf_counter() - made:.1f} s: job {job_id}", file=sys.stderr)
        server_url = f"http://127.0.0.1:{free_port()}"
        server = start(
            ["server", "--data-dir", str(root / "server"), "--port", server_url.rsplit(":", 1)[1]],
            root / "server.log",
        )
        procs.append(server)
        wait_http(server_url, server)
        results: Results = {}
        for _ in range(args.repeat):  # a new Dashboard each time: nothing in its memory
            dash_url, dashboard = start_dashboard(server_url, root)
            procs.append(dashboard)
            asyncio.run(measure(dash_url, job_id, "first", results))
            stop(dashboard)
        dash_url, dashboard = start_dashboard(server_url, root)
        procs.append(dashboard)
        asyncio.run(measure(dash_url, job_id, "warm", results))  # fills its memory
        for mode in ("revisit", "warm"):
            for _ in range(args.repeat):
                asyncio.run(measure(dash_url, job_id, mode, results))
        stop(dashboard)
        server_direct(server_url, job_id, args.repeat, results)
    finally:
        for proc in procs:
            stop(proc)
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)

    print(f"\n{platform.node()}, {os.cpu_count()} CPUs; medians of {args.repeat} runs, seconds")
    modes = ("first", "revisit", "warm")
    print(f"{'what':<44}" + "".join(f"{m:>9}" for m in modes))
    report: dict[str, Any] = {"tasks": args.tasks, "workers": args.workers, "results": {}}
    over = False
    for name, by_mode in results.items():
        medians = {m: statistics.median(v) for m, v in by_mode.items()}
        report["results"][name] = medians
        cells = []
        for m in modes:
            value = medians.get(m)
            flag = "*" if value is not None and value > LIMIT_S else " "
            over = over or flag == "*"
            cells.append("        -" if value is None else f"{value:8.3f}{flag}")
        print(f"{name:<44}" + "".join(cells))
    print(f"\n* over the {LIMIT_S} s limit" if over else f"\nAll under {LIMIT_S} s.")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
