"""Does a farm stay flat under steady work? Memory and disk of one Server and one Manager.

    .venv/bin/python bench/soak.py [--workers 300] [--minutes 10] [--warmup-s 180]
        [--render-s 60] [--job-size 10] [--keep-days 0.0007] [--samples 6] [--json PATH]
    .venv/bin/python bench/soak.py --quick      # 5 Workers, 12 s: does the script work?

A real Server and a real Manager run as processes (tests/farmkit.TestFarm: loopback, free
ports, a temporary folder). N simulated Workers live in THIS process (one keep-alive
connection each, simfarm.WorkerConnection) and work like real ones, without Blender:

    sync {want_task, completion of the last task}  -> an assignment (long poll)
    [render-s / 2]  POST /worker/updates {active, progress 0.5}
    [render-s / 2]  PUT  /worker/tasks/T/frames/F  a tiny real PNG, different for every frame
                    (the Server checks that a frame is a whole picture of its kind)
    -> the next sync carries {completed}

New jobs of --job-size one-frame tasks are submitted whenever fewer than --backlog tasks
wait, so the Server's tables, its frame store and the Manager's store and outbox see the
traffic of a farm in production. Render times are uniform in 0.5x-1.5x of --render-s: at
60 s, 300 Workers offer 5 tasks a second. The Manager delivers frames and updates to the
Server one request at a time, in order; offered more than that delivery sustains on the
machine, its outbox grows without end and the run measures a backlog, not a steady state.
The report prints the outbox at every sample and says so.

Disk: finished jobs and their frames are kept by the Server by default, so that part grows
by design. This benchmark runs the Server with --keep-days (default 0.0007 days, about one
minute; the retention pass every --retention-interval-s, 20 s) so that, once warmed up, the
farm should reach a steady state: every number in it should then be flat. --keep-days 0
keeps everything (the Server's default); the report then still separates databases, WALs
and files (frames, blobs) per data folder.

It samples, after --warmup-s and then --samples times up to the end: the RSS of the Server,
the Manager and this simulator (psutil, each with its children), and the bytes on disk of
each data folder. It prints start, samples and end, and whether each is flat within ±10 %.
It stops by itself after --minutes, and stops every process it started whatever happens
(Ctrl-C and SIGTERM included).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import io
import json
import os
import random
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
import uvloop
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))

from simfarm import BASIC_BLEND, BenchFarm, WorkerConnection, machine, new_update_id, upload_blob

FLAT = 0.10  # the target: start and end within ±10 %


# ---- the simulated Workers -----------------------------------------------------------------


class SoakConnection(WorkerConnection):
    """A Worker's connection that also PUTs a frame (raw bytes) on the same keep-alive socket."""

    async def put_frame(self, path: str, data: bytes, sha256: str) -> int:
        request = b"PUT %s HTTP/1.1\r\n%sX-Flamenco-SHA256: %s\r\nContent-Length: %d\r\n\r\n%s" % (
            path.encode(),
            self.head.replace(b"Content-Type: application/json", b"Content-Type: image/png"),
            sha256.encode(),
            len(data),
            data,
        )
        for attempt in (1, 2):
            try:
                status, _ = await self._exchange(request)
                return status
            except (ConnectionError, asyncio.IncompleteReadError):
                self.close()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")


def tiny_png(n: int) -> bytes:
    """An 8x8 PNG whose colour encodes n: every frame a different blob, as rendered ones are."""
    colour = (n & 0xFF, (n >> 8) & 0xFF, (n >> 16) & 0xFF)
    out = io.BytesIO()
    Image.new("RGB", (8, 8), colour).save(out, format="PNG")
    return out.getvalue()


@dataclass
class Tally:
    completed: int = 0
    frames: int = 0
    assignments: int = 0
    errors: Counter[str] = field(default_factory=Counter)


def update(task_id: str, worker: str, status: str, progress: float, activity: str) -> dict:
    return {
        "update_id": new_update_id(),
        "task_id": task_id,
        "status": status,
        "progress": progress,
        "activity": activity,
        "worker": worker,
    }


async def render(
    conn: SoakConnection, tally: Tally, task_id: str, seconds: float, heartbeat_s: float
) -> bool:
    """Wait `seconds`, syncing every `heartbeat_s` as a rendering Worker does (the Manager
    takes a task back from a Worker silent for worker_timeout_s, 60 s); False if the task
    was taken back or canceled meanwhile."""
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        await asyncio.sleep(min(left, heartbeat_s))
        if time.monotonic() >= end:
            break
        body = {"want_task": False, "running_task_id": task_id}
        status, reply = await conn.post("/api/v1/worker/sync", body)
        if status != 200:
            tally.errors[f"heartbeat HTTP {status}"] += 1
        elif task_id in (reply.get("cancel") or []):
            tally.errors["task taken back while rendering"] += 1
            return False
    return True


async def worker_loop(
    conn: SoakConnection,
    tally: Tally,
    index: int,
    name: str,
    render_s: float,
    heartbeat_s: float,
) -> None:
    rng = random.Random(index)
    warm: str | None = None
    carried: list[dict[str, Any]] = []
    while True:
        body = {"want_task": True, "wait_s": 10, "warm_job_id": warm, "updates": carried}
        try:
            status, reply = await conn.post("/api/v1/worker/sync", body)
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
            tally.errors[f"sync {type(exc).__name__}"] += 1
            await asyncio.sleep(1)
            continue
        if status != 200:
            tally.errors[f"sync HTTP {status}"] += 1
            await asyncio.sleep(1)
            continue
        tally.completed += len(carried)
        carried = []
        assignment = reply.get("assignment")
        if assignment is None:
            continue
        tally.assignments += 1
        task_id, warm = assignment["task_id"], assignment["job_id"]
        frame = assignment["frames"][0]
        half = render_s * rng.uniform(0.5, 1.5) / 2
        try:
            if not await render(conn, tally, task_id, half, heartbeat_s):
                continue
            progress = update(task_id, name, "active", 0.5, f"frame {frame}: sample 8/16")
            status, _ = await conn.post("/api/v1/worker/updates", {"updates": [progress]})
            if status != 200:
                tally.errors[f"updates HTTP {status}"] += 1
            if not await render(conn, tally, task_id, half, heartbeat_s):
                continue
            png = tiny_png(tally.frames + 1 + (index << 20))
            tally.frames += 1
            path = f"/api/v1/worker/tasks/{task_id}/frames/{frame}?filename=frame_{frame:06d}.png"
            status = await conn.put_frame(path, png, hashlib.sha256(png).hexdigest())
            if status != 201:
                tally.errors[f"frame HTTP {status}"] += 1
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
            tally.errors[f"task {type(exc).__name__}"] += 1
        carried = [update(task_id, name, "completed", 1.0, "done")]


async def register(base_url: str, secret: str, count: int) -> list[tuple[str, str]]:
    async with httpx.AsyncClient(base_url=base_url, timeout=60) as client:

        async def one(i: int) -> tuple[str, str]:
            name = f"soak-{i:04d}"
            body = {"secret": secret, "name": name, "platform": "sim", "cpu_count": 1}
            reply = await client.post("/api/v1/workers/register", json=body)
            reply.raise_for_status()
            return name, reply.json()["token"]

        creds = []
        for start in range(0, count, 25):  # a few at a time: registration hashes a secret
            batch = range(start, min(count, start + 25))
            creds += await asyncio.gather(*(one(i) for i in batch))
        return creds


# ---- jobs -----------------------------------------------------------------------------------


def submit_job(farm: BenchFarm, sha: str, n: int, size: int) -> None:
    from flamenco import wire

    sub = wire.JobSubmission(
        name=f"soak-{n:05d}",
        files={BASIC_BLEND.name: sha},
        settings={"blend": BASIC_BLEND.name, "frames": f"1-{size}", "chunk_size": 1},
    )
    farm.api().call("POST", "/api/v1/jobs", wire.Job, sub)


async def keep_fed(
    farm: BenchFarm, tally: Tally, args: argparse.Namespace, jobs: list[int]
) -> None:
    """Submit a job whenever fewer than --backlog tasks wait: the queue never runs dry."""
    loop = asyncio.get_running_loop()
    sha = await loop.run_in_executor(None, upload_blob, farm, BASIC_BLEND)
    while True:
        if jobs[0] * args.job_size - tally.completed < args.backlog:
            await loop.run_in_executor(None, submit_job, farm, sha, jobs[0], args.job_size)
            jobs[0] += 1
        else:
            await asyncio.sleep(0.5)


# ---- what is measured -------------------------------------------------------------------------


def rss(pid: int, children: bool = True) -> int:
    """Resident bytes of a process, with its children unless told not to."""
    with contextlib.suppress(psutil.Error):
        proc = psutil.Process(pid)
        total = proc.memory_info().rss
        for child in proc.children(recursive=True) if children else []:
            with contextlib.suppress(psutil.Error):
                total += child.memory_info().rss
        return total
    return 0


def disk(folder: Path) -> dict[str, int]:
    """Bytes in a data folder: SQLite databases, their WAL/SHM files, and all other files."""
    parts = {"db": 0, "wal": 0, "files": 0}
    for path in folder.rglob("*"):
        with contextlib.suppress(OSError):
            if not path.is_file():
                continue
            size = path.stat().st_size
            if path.name.endswith(("-wal", "-shm", "-journal")):
                parts["wal"] += size
            elif path.suffix in (".sqlite", ".db", ".sqlite3"):
                parts["db"] += size
            else:
                parts["files"] += size
    return parts


def manager_queue(farm: BenchFarm) -> dict[str, int]:
    """What the Manager still has to send the Server: if this grows, the farm does not keep
    up with the offered work, and the soak measures a backlog, not a steady state."""
    assert farm.secrets is not None
    with contextlib.suppress(httpx.HTTPError, ValueError, KeyError):
        reply = httpx.get(
            f"{farm.manager_url}/api/v1/status",
            headers={"Authorization": f"Bearer {farm.secrets.manager_token}"},
            timeout=30,
        ).json()
        return {k: reply[k] for k in ("outbox", "set_aside", "held_tasks", "cache_bytes")}
    return {}


def sample(
    farm: BenchFarm, t0: float, tally: Tally, jobs: list[int], pids: dict[str, int]
) -> dict[str, Any]:
    return {
        "manager_queue": manager_queue(farm),
        "t_s": round(time.monotonic() - t0, 1),
        # The simulator's children are the Server and the Manager: counted on their own.
        "rss": {label: rss(pid, children=label != "simulator") for label, pid in pids.items()},
        "disk": {
            "server": disk(farm.root / "server"),
            "manager": disk(farm.root / "manager-local"),
        },
        "tasks_completed": tally.completed,
        "frames_sent": tally.frames,
        "jobs_submitted": jobs[0],
        "loadavg": [round(x, 2) for x in os.getloadavg()],
    }


def change(start: float, end: float) -> float:
    return (end - start) / start if start else 0.0


def verdicts(samples: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each measure at the first sample (after warm-up) and at the last, and whether flat."""
    first, last = samples[0], samples[-1]
    out: dict[str, dict[str, Any]] = {}
    for label in first["rss"]:
        a, b = first["rss"][label], last["rss"][label]
        out[f"RSS {label}"] = {"start": a, "end": b, "change": change(a, b)}
    for part in first["disk"]:
        a, b = sum(first["disk"][part].values()), sum(last["disk"][part].values())
        out[f"disk {part}"] = {"start": a, "end": b, "change": change(a, b)}
    for row in out.values():
        row["flat"] = abs(row["change"]) <= FLAT
    return out


# ---- the run ----------------------------------------------------------------------------------


async def drive(farm: BenchFarm, args: argparse.Namespace) -> dict[str, Any]:
    assert farm.secrets is not None and farm.manager_url
    t0 = time.monotonic()
    loop = asyncio.get_running_loop()
    tally, jobs = Tally(), [0]
    pids = {
        "server": farm.procs[0].pid,
        "manager": farm.managers["local"].proc.pid,
        "simulator": os.getpid(),
    }
    creds = await register(farm.manager_url, farm.secrets.worker_secret, args.workers)
    conns = [SoakConnection(farm.manager_url, token) for _, token in creds]
    running = [asyncio.create_task(keep_fed(farm, tally, args, jobs))]
    running += [
        asyncio.create_task(worker_loop(conn, tally, i, name, args.render_s, args.heartbeat_s))
        for i, (conn, (name, _)) in enumerate(zip(conns, creds, strict=True))
    ]
    samples: list[dict[str, Any]] = []
    try:
        end = t0 + args.minutes * 60
        first = t0 + args.warmup_s
        step = (end - first) / max(1, args.samples)
        for at in [first + i * step for i in range(args.samples)] + [end]:
            await asyncio.sleep(max(0.0, at - time.monotonic()))
            for task in running:  # a part that died ends the run: its numbers would lie
                if task.done():
                    task.result()
            if not all(proc.alive() for proc in farm.procs):
                raise RuntimeError("a farm process exited during the soak; see its log")
            one = await loop.run_in_executor(None, sample, farm, t0, tally, jobs, pids)
            samples.append(one)
            show_sample(one)
    finally:
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
        for conn in conns:
            conn.close()
    return {
        "samples": samples,
        "verdicts": verdicts(samples),
        "tasks_completed": tally.completed,
        "assignments": tally.assignments,
        "frames_sent": tally.frames,
        "jobs_submitted": jobs[0],
        "errors": dict(tally.errors),
        "pids": pids,
    }


def mib(n: float) -> str:
    return f"{n / 2**20:.1f}"


def show_sample(s: dict[str, Any]) -> None:
    rss_text = " ".join(f"{k} {mib(v)}" for k, v in s["rss"].items())
    disk_text = " ".join(
        f"{k} {mib(v['db'])}+{mib(v['wal'])}wal+{mib(v['files'])}files"
        for k, v in s["disk"].items()
    )
    print(
        f"t={s['t_s']:>6.0f}s  RSS MiB: {rss_text}  disk MiB: {disk_text}  "
        f"tasks {s['tasks_completed']}  jobs {s['jobs_submitted']}  "
        f"outbox {s['manager_queue'].get('outbox', '?')}  load {s['loadavg'][0]}",
        flush=True,
    )


def show(result: dict[str, Any]) -> None:
    print(
        f"\n{result['tasks_completed']} tasks completed, {result['frames_sent']} frames, "
        f"{result['jobs_submitted']} jobs, errors: {result['errors'] or 0}"
    )
    print(f"{'measure':<20}{'start MiB':>12}{'end MiB':>12}{'change':>10}  flat ±{FLAT:.0%}")
    for label, row in result["verdicts"].items():
        print(
            f"{label:<20}{mib(row['start']):>12}{mib(row['end']):>12}"
            f"{row['change']:>+10.1%}  {'yes' if row['flat'] else 'NO'}"
        )
    queued = [s["manager_queue"].get("outbox", 0) for s in result["samples"]]
    print(f"Manager outbox (items not yet at the Server) per sample: {queued}")
    if queued[-1] > max(100, 2 * queued[0]):
        print("  it grew: the farm did not keep up with the offered work (lower --render-s)")
    flat = all(row["flat"] for row in result["verdicts"].values())
    print(f"verdict: {'flat' if flat else 'NOT flat'} within ±{FLAT:.0%}")


def run(args: argparse.Namespace) -> dict[str, Any]:
    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="flamenco-soak-"))
    root.mkdir(parents=True, exist_ok=True)
    server_env = {"FLAMENCO_SERVER_RETENTION_INTERVAL_S": str(args.retention_interval_s)}
    if args.keep_days:
        server_env["FLAMENCO_SERVER_KEEP_DAYS"] = str(args.keep_days)
    try:
        with BenchFarm(root) as farm:
            farm.start_server(env=server_env)
            farm.start_manager()
            result = uvloop.run(drive(farm, args))
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    return result


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workers", type=int, default=300)
    parser.add_argument("--minutes", type=float, default=10.0, help="whole run, warm-up included")
    parser.add_argument("--warmup-s", type=float, default=180.0, help="before the first sample")
    parser.add_argument("--samples", type=int, default=6, help="samples after the first")
    parser.add_argument("--render-s", type=float, default=60.0, help="mean time per task")
    parser.add_argument(
        "--heartbeat-s",
        type=float,
        default=10.0,
        help="sync while rendering every (real Workers: 1 s; the Manager's timeout is 60 s)",
    )
    parser.add_argument("--job-size", type=int, default=10, help="one-frame tasks per job")
    parser.add_argument("--backlog", type=int, default=None, help="tasks kept waiting [2xN]")
    parser.add_argument(
        "--keep-days", type=float, default=0.0007, help="Server --keep-days (0: keep all)"
    )
    parser.add_argument("--retention-interval-s", type=float, default=20.0)
    parser.add_argument("--quick", action="store_true", help="5 Workers, 12 s: a smoke run")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--keep", default=None, help="farm folder to keep (logs, databases)")
    args = parser.parse_args(argv)
    if args.quick:
        args.workers, args.minutes, args.warmup_s, args.samples = 5, 12 / 60, 4.0, 2
        args.render_s, args.job_size = 0.5, 10
    if args.backlog is None:
        args.backlog = 2 * args.workers
    if not 0 < args.warmup_s < args.minutes * 60:
        parser.error("--warmup-s must be more than 0 and less than the run (--minutes).")
    return args


def main() -> None:
    args = parse()

    def stop(signum: int, _frame: object) -> None:
        raise SystemExit(f"stopped by signal {signum}")  # the farm's context stops its processes

    signal.signal(signal.SIGTERM, stop)
    info = machine()
    print(
        f"soak: {args.workers} simulated Workers, {args.minutes:g} min, "
        f"warm-up {args.warmup_s:g} s, render {args.render_s:g} s, "
        f"keep-days {args.keep_days:g}; {info['nproc']} cores "
        f"({info['cpu_model']}), load {' '.join(f'{x:.2f}' for x in info['loadavg'])}",
        flush=True,
    )
    result = run(args)
    info["loadavg_end"] = list(os.getloadavg())
    show(result)
    print(f"load average at the end: {' '.join(f'{x:.2f}' for x in info['loadavg_end'])}")
    if args.json:
        settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
        args.json.write_text(
            json.dumps({"machine": info, "settings": settings, **result}, indent=2)
        )


if __name__ == "__main__":
    main()
