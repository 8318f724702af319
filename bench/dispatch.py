"""How fast does one Manager hand out tasks? M simulated Workers against a real farm.

    .venv/bin/python bench/dispatch.py [--workers 500] [--duration 20] [--warmup 5]
        [--wait-s 10] [--render-s 0] [--tasks N] [--job-size 1000] [--prefetch N] [--probes]
        [--py-spy DIR] [--json PATH] [--keep DIR] [--tmp-root DIR]

A real Server and a real Manager run as processes (tests/farmkit.TestFarm, free ports, a
temporary folder). The Server gets enough tasks first: jobs of --job-size one-frame tasks
(frames 1-N, chunk 1) on a tiny real .blend (basic_file.blend of the blend corpus).

M simulated Workers live in THIS process (on uvloop), each with one keep-alive connection
of its own that speaks just enough HTTP/1.1 for its JSON requests (simfarm.WorkerConnection:
the load generator shares the machine's cores with the farm and must stay cheap; aiohttp cost
twice its CPU; `--client aiohttp` brings it back for comparison). Each registers with the
join secret, then loops:

    POST /api/v1/worker/sync {want_task: true, wait_s, warm_job_id: last job,
                              updates: [the last task's completion]}  (long poll)
    -> on an assignment: [sleep --render-s], then the next sync carries its completion

With --render-s 0 (the default) this is a closed loop without think time: the Workers ask
again as soon as they got a task, so the farm is always saturated
and, by Little's law, latency ~= Workers / rate - completion time. With --render-s R each
task "renders" R seconds on average, so 500 Workers offer at most 500 / R assignments/s
(R = 0.4: about 1,000/s at low latency), the setting in which a latency target means
something.

Measured over --duration seconds after --warmup seconds:
  - assignments per second (assignments received inside the window / window length);
  - assignment latency: from sending the sync that asked for work to receiving the
    assignment (only syncs that brought one), p50 / p90 / p99 / max;
  - tasks handed out twice, over the whole run: to two different Workers (must be 0) and to
    the same Worker again;
  - CPU seconds per second of the Server, the Manager and this load generator (/proc);
  - completions the Server took per second (its applied_updates rows) and the Manager's
    outbox at the window's start and end: a Server that falls behind the completions shows
    as a rate below the assignments and an outbox that grows;
  - how late this process's own event loop is (it adds to every latency measured here).

Simulated Workers that die are counted among the errors. With --tasks too few for the
window (about rate x (warm-up + duration)), the Server runs dry and the rate drops: the
default of 50,000 lasts a 30 s window at 1,200/s.

--probes runs Server and Manager through bench/simfarm.py's aggregate probes: calls, time
inside each service function, leases per upstream sync, event-loop lag of the Manager,
garbage collections, and percentiles of where a Worker sync's time goes (waiting for a task,
waiting for the write behind).
--py-spy DIR samples Server and Manager with py-spy during the window (collapsed stacks
in DIR) and prints where their CPU goes. Both change the timings a little: take the
headline numbers from a run without them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import uvloop
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))

from simfarm import (
    BASIC_BLEND,
    BenchFarm,
    SimClient,
    WorkerConnection,
    busy_cores_between,
    completed_update,
    cpu_seconds,
    cpu_ticks,
    machine,
    percentile,
    pyspy_record,
    read_collapsed,
    register_workers,
    stats_delta,
    submit_jobs,
)

from farmkit import free_port, wait_until

console = Console(width=130)

TARGET_RATE = 1000.0
TARGET_P99_MS = 100.0

MANAGER_BUCKETS = {
    "worker sync route (all of it)": ("create_manager_app.<locals>.sync (",),
    "  authenticate_worker (threadpool)": ("ManagerService.authenticate_worker (",),
    "  _check_in (1 txn)": ("ManagerService._check_in (",),
    "  _assign (1 txn)": ("ManagerService._assign (",),
    "    _pick": ("ManagerService._pick (",),
    "    _other_awake_workers (in _pick)": ("ManagerService._other_awake_workers (",),
    "worker updates route: apply_worker_updates": ("ManagerService.apply_worker_updates (",),
    "  Outbox.add_update": ("Outbox.add_update (",),
    "upstream link: ServerLink.sync_once": ("ServerLink.sync_once (",),
    "upstream link: ServerLink.deliver": ("ServerLink.deliver (",),
    "  want/held_ids/progress/workers": (
        "ServerSide.want (",
        "ServerSide.held_ids (",
        "ServerSide.progress (",
        "ServerSide.workers (",
    ),
    "  take_leases": ("ServerSide.take_leases (",),
    "  Outbox.flush": ("Outbox.flush (",),
    "reap_silent_workers": ("ManagerService.reap_silent_workers (",),
    "[lib] sqlalchemy": ("sqlalchemy/",),
    "[lib] pydantic": ("pydantic", "fastapi/_compat"),
    "[lib] logging": ("logging/__init__", "flamenco/logs.py"),
    "[lib] HTTP server outside the app (uvicorn+h11)": ("uvicorn/", "h11/", "-fastapi/"),
    "[lib] json (stdlib)": ("json/",),
    "[lib] httpx (to Server)": ("httpx/", "httpcore/"),
}
SERVER_BUCKETS = {
    "manager sync route: LeaseService._sync": ("LeaseService._sync (",),
    "  expire_leases": ("LeaseService.expire_leases (",),
    "  _renew": ("LeaseService._renew (",),
    "  _lease": ("LeaseService._lease (",),
    "refresh_job_status (sync and updates)": ("refresh_job_status (",),
    "manager updates route: apply_updates": ("UpdateIntake.apply_updates (",),
    "auth: manager_for_token": ("AuthService.manager_for_token (",),
    "[lib] sqlalchemy": ("sqlalchemy/",),
    "[lib] pydantic": ("pydantic", "fastapi/_compat"),
    "[lib] logging": ("logging/__init__", "flamenco/logs.py"),
    "[lib] HTTP server outside the app (uvicorn+h11)": ("uvicorn/", "h11/", "-fastapi/"),
    "[lib] json (stdlib)": ("json/",),
}


class Run:
    """What the simulated Workers saw."""

    def __init__(self, workers: int) -> None:
        self.assignments: list[tuple[float, float, str, int]] = []  # t_recv, latency, task, w
        self.updates: list[tuple[float, float]] = []  # t_recv, latency
        self.empty: list[float] = []  # long polls that ended without a task
        self.errors: Counter[str] = Counter()
        self.cancels = 0
        self.holder: dict[str, int] = {}
        self.twice_other = 0
        self.twice_same = 0
        self.workers = workers
        self.lag: list[tuple[float, float]] = []  # when, how late a 10 ms sleep woke

    def assigned(self, t: float, latency: float, task_id: str, worker: int) -> None:
        self.assignments.append((t, latency, task_id, worker))
        previous = self.holder.get(task_id)
        if previous is None:
            self.holder[task_id] = worker
        elif previous == worker:
            self.twice_same += 1
        else:
            self.twice_other += 1


async def own_lag(run: Run) -> None:
    """How late this process's own loop is: it adds to every latency measured here."""
    while True:
        t0 = time.perf_counter()
        await asyncio.sleep(0.01)
        t1 = time.perf_counter()
        run.lag.append((t1, t1 - t0 - 0.01))


Post = Callable[[str, dict[str, Any]], Awaitable[tuple[int, Any]]]


def sync_client(kind: str, shared: SimClient, base_url: str, token: str) -> Post:
    """How one simulated Worker posts: its own lean connection, or (--client aiohttp, the
    heavier load generator of earlier measurements) the shared aiohttp session."""
    if kind == "aiohttp":
        import aiohttp

        async def post(path: str, body: dict[str, Any]) -> tuple[int, Any]:
            try:
                return await shared.post(path, body, token)
            except aiohttp.ClientError as exc:  # counted like the lean client's errors
                raise OSError(str(exc)) from exc

        return post
    return WorkerConnection(base_url, token).post


async def worker_loop(
    post: Post, run: Run, index: int, name: str, wait_s: float, render_s: float
) -> None:
    """One simulated Worker, speaking like the real one: a task's completion rides along with
    the sync that asks for the next task (one request per assignment)."""
    rng = random.Random(index)
    warm: str | None = None
    carried: list[dict[str, Any]] = []
    while True:
        body = {
            "want_task": True,
            "wait_s": wait_s,
            "warm_job_id": warm,
            "status": "awake",
            "updates": carried,
        }
        t0 = time.perf_counter()
        try:
            status, reply = await post("/api/v1/worker/sync", body)
        except (OSError, asyncio.IncompleteReadError, ValueError, TimeoutError) as exc:
            run.errors[f"sync {type(exc).__name__}"] += 1
            await asyncio.sleep(0.5)
            continue
        t1 = time.perf_counter()
        if status != 200:
            run.errors[f"sync HTTP {status}"] += 1
            await asyncio.sleep(0.5)
            continue
        if carried:
            run.updates.append((t1, t1 - t0))
            carried = []
        run.cancels += len(reply.get("cancel") or [])
        assignment = reply.get("assignment")
        if assignment is None:
            run.empty.append(t1)
            continue
        run.assigned(t1, t1 - t0, assignment["task_id"], index)
        warm = assignment["job_id"]
        if render_s > 0:  # a render of render_s on average (uniform 0.5x to 1.5x)
            await asyncio.sleep(render_s * rng.uniform(0.5, 1.5))
        carried = [completed_update(assignment["task_id"], name)]


def manager_status(farm: BenchFarm) -> dict[str, Any]:
    assert farm.secrets is not None
    with contextlib.suppress(httpx.HTTPError, ValueError):
        reply = httpx.get(
            f"{farm.manager_url}/api/v1/status",
            headers={"Authorization": f"Bearer {farm.secrets.manager_token}"},
            timeout=30,
        )
        data = reply.json()
        return {k: data[k] for k in ("held_tasks", "outbox", "server_online")}
    return {}


def updates_taken(farm: BenchFarm) -> int:
    """How many task updates the Server has recorded so far (each one gets an applied_updates
    row): with the Manager's outbox, whether the Server keeps up with the completions."""
    import sqlite3

    db = sqlite3.connect(f"file:{farm.root / 'server' / 'server.sqlite'}?mode=ro", uri=True)
    try:
        return db.execute("SELECT coalesce(max(rowid), 0) FROM applied_updates").fetchone()[0]
    finally:
        db.close()


async def drive(farm: BenchFarm | PlainTarget, args: argparse.Namespace) -> dict[str, Any]:
    """Drive a farm (Server + Manager) or the plain dispatcher (its one process is counted as
    the 'manager'; its 'server' is that same process, so only the manager line counts)."""
    plain = isinstance(farm, PlainTarget)
    base_url = farm.url if plain else farm.manager_url
    secret = farm.token if plain else farm.secrets.worker_secret  # type: ignore[union-attr]
    client = SimClient(base_url)
    loop = asyncio.get_running_loop()
    manager_pid = farm.pid if plain else farm.managers["local"].proc.pid
    server_pid = 0 if plain else farm.procs[0].pid
    result: dict[str, Any] = {"target": "plain" if plain else "flamenco"}
    try:
        t = time.perf_counter()
        creds = await register_workers(client, secret, args.workers)
        result["register_s"] = time.perf_counter() - t
        run = Run(args.workers)
        tasks = [
            asyncio.create_task(
                worker_loop(
                    sync_client(args.client, client, base_url, token),
                    run,
                    i,
                    name,
                    args.wait_s,
                    args.render_s,
                )
            )
            for i, (name, token) in enumerate(creds)
        ]
        tasks.append(asyncio.create_task(own_lag(run)))
        await asyncio.sleep(args.warmup)
        w0 = time.perf_counter()
        cpu0 = {
            "server": cpu_seconds(server_pid),
            "manager": cpu_seconds(manager_pid),
            "load generator": time.process_time(),
        }
        probes0 = {} if plain else {c: farm.read_stats(c) for c in ("server", "manager")}
        taken0 = 0 if plain else updates_taken(farm)  # type: ignore[arg-type]
        outbox0 = {} if plain else await loop.run_in_executor(None, manager_status, farm)
        spies = {}
        if args.py_spy and not plain:
            args.py_spy.mkdir(parents=True, exist_ok=True)
            for label, pid in (("manager", manager_pid), ("server", server_pid)):
                out = args.py_spy / f"{label}-{args.workers}.txt"
                spies[label] = (out, pyspy_record(pid, args.duration, out))
        ticks0 = cpu_ticks()
        await asyncio.sleep(max(0.0, w0 + args.duration - time.perf_counter()))
        w1 = time.perf_counter()
        ticks1 = cpu_ticks()
        cpu1 = {
            "server": cpu_seconds(server_pid),
            "manager": cpu_seconds(manager_pid),
            "load generator": time.process_time(),
        }
        probes1 = {} if plain else {c: farm.read_stats(c) for c in ("server", "manager")}
        taken1 = 0 if plain else updates_taken(farm)  # type: ignore[arg-type]
        status = {} if plain else await loop.run_in_executor(None, manager_status, farm)
        for task in tasks:
            task.cancel()
        for outcome in await asyncio.gather(*tasks, return_exceptions=True):
            if isinstance(outcome, Exception):  # a simulated Worker that died: say so
                run.errors[f"worker died: {type(outcome).__name__}: {outcome}"] += 1
        for _label, (_out, proc) in spies.items():
            if proc is not None:
                await loop.run_in_executor(None, proc.wait)
    finally:
        await client.close()

    inside = [a for a in run.assignments if w0 <= a[0] < w1]
    latencies_ms = [a[1] * 1000 for a in inside]
    seconds = w1 - w0
    result.update(
        {
            "workers": args.workers,
            "duration_s": round(seconds, 2),
            "warmup_s": args.warmup,
            "wait_s": args.wait_s,
            "render_s": args.render_s,
            "offered_per_s_max": (
                round(args.workers / args.render_s, 1) if args.render_s > 0 else None
            ),
            "assignments": len(inside),
            "assignments_per_s": round(len(inside) / seconds, 1),
            "latency_ms": {
                "p50": round(percentile(latencies_ms, 50), 1),
                "p90": round(percentile(latencies_ms, 90), 1),
                "p99": round(percentile(latencies_ms, 99), 1),
                "max": round(max(latencies_ms, default=float("nan")), 1),
            },
            "update_latency_ms": {
                "p50": round(
                    percentile([u[1] * 1000 for u in run.updates if w0 <= u[0] < w1], 50), 1
                ),
                "p99": round(
                    percentile([u[1] * 1000 for u in run.updates if w0 <= u[0] < w1], 99), 1
                ),
            },
            "empty_long_polls": sum(1 for t in run.empty if w0 <= t < w1),
            "handed_out_twice_other_worker": run.twice_other,
            "handed_out_twice_same_worker": run.twice_same,
            "assignments_total_run": len(run.assignments),
            "cancels": run.cancels,
            "errors": dict(run.errors),
            "load_generator_loop_lag_ms": {
                p: round(percentile([x * 1000 for t, x in run.lag if w0 <= t < w1], p), 1)
                for p in (50, 99)
            },
            "cpu_cores_used": {k: round((cpu1[k] - cpu0[k]) / seconds, 2) for k in cpu0},
            "cpu_ms_per_assignment": {
                k: round((cpu1[k] - cpu0[k]) / max(1, len(inside)) * 1000, 2) for k in cpu0
            },
            "machine_busy_cores": round(busy_cores_between(ticks0, ticks1), 2),
            "manager_status_at_end": status,
            # Completions the Server recorded in the window, and the Manager's backlog of
            # them: a Server that falls behind shows as an outbox that grows.
            "server_updates_per_s": None if plain else round((taken1 - taken0) / seconds, 1),
            "outbox_at_start_end": None if plain else (outbox0.get("outbox"), status.get("outbox")),
            "tasks_on_server": args.tasks,
        }
    )
    if args.probes and not plain:
        result["probes"] = {c: stats_delta(probes0[c], probes1[c]) for c in ("server", "manager")}
    if spies:
        result["py_spy"] = {}
        for label, (out, _proc) in spies.items():
            buckets = MANAGER_BUCKETS if label == "manager" else SERVER_BUCKETS
            prof = read_collapsed(out, buckets)
            denom = 100.0 * seconds  # samples per second at --rate 100
            result["py_spy"][label] = {
                "file": str(out),
                "samples": prof.samples,
                "idle_samples_dropped": prof.idle,
                "active_threads_avg": round(prof.samples / denom, 2),
                "buckets_core_s_per_s": {
                    k: round(prof.inclusive.get(k, 0) / denom, 3) for k in buckets
                },
                "threads_core_s_per_s": {
                    k: round(v / denom, 3) for k, v in prof.threads.most_common()
                },
                "main_thread_buckets": {
                    k: round(prof.main_inclusive.get(k, 0) / denom, 3) for k in buckets
                },
                "top_leaf": [(k, round(v / denom, 3)) for k, v in prof.leaf.most_common(15)],
                "main_top_leaf": [
                    (k, round(v / denom, 3)) for k, v in prof.main_leaf.most_common(15)
                ],
            }
    return result


class PlainTarget:
    """bench/plain_dispatcher.py as a process: the reference a Manager is measured against."""

    def __init__(self, root: Path, tasks: int, synchronous: str) -> None:
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.token = secrets.token_hex(16)
        self.log = (root / "plain.log").open("wb")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                str(Path(__file__).resolve().parent / "plain_dispatcher.py"),
                *("--db", str(root / "plain.sqlite"), "--port", str(port)),
                *("--token", self.token, "--tasks", str(tasks)),
                *("--synchronous", synchronous),
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.pid = self.proc.pid

    def __enter__(self) -> PlainTarget:
        def answers() -> bool:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the plain dispatcher exited: {self.proc.returncode}")
            with contextlib.suppress(httpx.HTTPError):
                httpx.post(f"{self.url}/api/v1/worker/sync", json={}, timeout=2)
                return True
            return False

        try:
            wait_until(answers, 120, "the plain dispatcher answers")
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def run_plain(args: argparse.Namespace) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="flamenco-plain-", dir=args.tmp_root))
    loadavg_start = list(os.getloadavg())
    try:
        t = time.perf_counter()
        with PlainTarget(root, args.tasks, args.plain_synchronous) as plain:
            submit_s = time.perf_counter() - t
            result = uvloop.run(drive(plain, args))
            result["submit_s"] = round(submit_s, 1)
            result["plain_synchronous"] = args.plain_synchronous
            result["client"] = args.client
            result["loadavg_start"] = loadavg_start
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return result


def run_once(args: argparse.Namespace) -> dict[str, Any]:
    root = (
        Path(args.keep)
        if args.keep
        else Path(tempfile.mkdtemp(prefix="flamenco-dispatch-", dir=args.tmp_root))
    )
    loadavg_start = list(os.getloadavg())
    root.mkdir(parents=True, exist_ok=True)
    mgr_env = {}
    if args.prefetch is not None:
        mgr_env["FLAMENCO_MANAGER_PREFETCH"] = str(args.prefetch)
    try:
        with BenchFarm(root, probes=args.probes) as farm:
            farm.start_server()
            t = time.perf_counter()
            jobs = submit_jobs(farm, BASIC_BLEND, args.tasks, args.job_size)
            submit_s = time.perf_counter() - t
            console.print(
                f"[dim]{args.tasks} tasks in {len(jobs)} jobs submitted in {submit_s:.1f} s[/dim]"
            )
            farm.start_manager(env=mgr_env)
            result = uvloop.run(drive(farm, args))  # the Workers' side must stay cheap
            result["submit_s"] = round(submit_s, 1)
            result["jobs"] = len(jobs)
            result["prefetch"] = args.prefetch
            result["client"] = args.client
            result["farm_folder"] = str(root)
            result["loadavg_start"] = loadavg_start
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    return result


def show(result: dict[str, Any]) -> None:
    lat = result["latency_ms"]
    render = f", render {result['render_s']} s" if result["render_s"] else ""
    who = "the plain dispatcher" if result.get("target") == "plain" else "one Manager"
    table = Table(title=f"dispatch: {result['workers']} simulated Workers{render}, {who}")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_column("target", justify="right")
    table.add_row("assignments/s", f"{result['assignments_per_s']:.0f}", f"{TARGET_RATE:.0f}")
    table.add_row("assignment latency p50 (ms)", f"{lat['p50']:.1f}", "")
    table.add_row("assignment latency p90 (ms)", f"{lat['p90']:.1f}", "")
    table.add_row("assignment latency p99 (ms)", f"{lat['p99']:.1f}", f"< {TARGET_P99_MS:.0f}")
    table.add_row("assignment latency max (ms)", f"{lat['max']:.1f}", "")
    table.add_row(
        "completion report (updates) p50 / p99 (ms)",
        f"{result['update_latency_ms']['p50']:.1f} / {result['update_latency_ms']['p99']:.1f}",
        "",
    )
    table.add_row(
        "handed out twice: other Worker / same Worker",
        f"{result['handed_out_twice_other_worker']} / {result['handed_out_twice_same_worker']}",
        "0",
    )
    table.add_row("long polls that ended empty", str(result["empty_long_polls"]), "")
    if result.get("server_updates_per_s") is not None:
        start, end = result["outbox_at_start_end"]
        table.add_row(
            "completions the Server took /s; Manager outbox at window start / end",
            f"{result['server_updates_per_s']:.0f}; {start} / {end}",
            "= rate; flat",
        )
    own = result["load_generator_loop_lag_ms"]
    table.add_row("load generator's own loop lag p50 / p99 (ms)", f"{own[50]} / {own[99]}", "")
    table.add_row("errors", json.dumps(result["errors"]) if result["errors"] else "0", "")
    cpu = result["cpu_cores_used"]
    table.add_row(
        "CPU cores used: Server / Manager / load gen",
        f"{cpu['server']:.2f} / {cpu['manager']:.2f} / {cpu['load generator']:.2f}",
        "",
    )
    per = result["cpu_ms_per_assignment"]
    total_ms = sum(per.values())
    table.add_row(
        "CPU ms per assignment: Server / Manager / load gen",
        f"{per['server']:.2f} / {per['manager']:.2f} / {per['load generator']:.2f}",
        "",
    )
    if total_ms and per["manager"]:
        ceiling = min(1000 / per["manager"], 2000 / total_ms)
        table.add_row(
            "  => CPU ceiling: min(Manager 1 core (GIL), farm 2 cores)",
            f"{ceiling:.0f}/s",
            f"{TARGET_RATE:.0f}",
        )
    others = result["machine_busy_cores"] - sum(cpu.values())
    table.add_row(
        "machine busy cores: all / other processes",
        f"{result['machine_busy_cores']:.2f} / {others:.2f}",
        "",
    )
    console.print(table)


def show_probes(result: dict[str, Any]) -> None:
    seconds = result["duration_s"]
    assigned = max(1, result["assignments"])
    for component, data in result.get("probes", {}).items():
        table = Table(title=f"{component}: time inside functions during the window")
        for col in (
            "function",
            "calls/s",
            "wall ms/call",
            "max ms",
            "wall s/s",
            "CPU ms/call",
            "CPU ms/assignment",
        ):
            table.add_column(col, justify="right" if col != "function" else "left")
        for label, (n, total, mx, cpu) in sorted(data["calls"].items(), key=lambda kv: -kv[1][1]):
            table.add_row(
                label,
                f"{n / seconds:.1f}",
                f"{total / n * 1000:.2f}",
                f"{mx * 1000:.1f}",
                f"{total / seconds:.3f}",
                f"{cpu / n * 1000:.2f}" if cpu else "-",
                f"{cpu / assigned * 1000:.2f}" if cpu else "-",
            )
        console.print(table)
        if data["sums"]:
            console.print(
                "  per second: "
                + ", ".join(f"{k} {v / seconds:.1f}" for k, v in sorted(data["sums"].items()))
            )
        for label, values in sorted(data.get("dists", {}).items()):
            ms = [x * 1000 for x in values]
            console.print(
                f"  {label}: p50 {percentile(ms, 50):.1f} ms, p90 {percentile(ms, 90):.1f} ms, "
                f"p99 {percentile(ms, 99):.1f} ms, max {max(ms, default=0):.1f} ms "
                f"({len(ms)} calls)"
            )
        if data.get("lag"):
            lag = [x * 1000 for x in data["lag"]]
            console.print(
                f"  event-loop lag (10 ms timer): p50 {percentile(lag, 50):.1f} ms, "
                f"p99 {percentile(lag, 99):.1f} ms, max {max(lag):.1f} ms"
            )


def show_pyspy(result: dict[str, Any]) -> None:
    for component, data in result.get("py_spy", {}).items():
        threads = ", ".join(f"{k} {v:.2f}" for k, v in data["threads_core_s_per_s"].items())
        table = Table(
            title=f"py-spy {component}: busy samples per second of wall time by function "
            f"(1.0 = one thread busy all the time); threads: {threads}"
        )
        table.add_column("bucket (inclusive)")
        table.add_column("all threads", justify="right")
        table.add_column("MainThread (event loop)", justify="right")
        for k, v in data["buckets_core_s_per_s"].items():
            table.add_row(k, f"{v:.3f}", f"{data['main_thread_buckets'].get(k, 0):.3f}")
        console.print(table)
        console.print(
            "  top leaf frames, MainThread: "
            + "; ".join(f"{k} {v}" for k, v in data["main_top_leaf"][:8])
        )
        console.print(
            "  top leaf frames, all: " + "; ".join(f"{k} {v}" for k, v in data["top_leaf"][:8])
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[500])
    parser.add_argument("--duration", type=float, default=30.0)
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--wait-s", type=float, default=10.0)
    parser.add_argument(
        "--render-s",
        type=float,
        default=0.0,
        help="simulated render time per task (mean; 0: report completion at once)",
    )
    parser.add_argument("--tasks", type=int, default=50_000, help="tasks created on the Server")
    parser.add_argument("--job-size", type=int, default=1000)
    parser.add_argument("--prefetch", type=int, default=None, help="Manager prefetch [1]")
    parser.add_argument("--probes", action="store_true")
    parser.add_argument(
        "--client",
        choices=("lean", "aiohttp"),
        default="lean",
        help="how simulated Workers post: a lean connection each, or one aiohttp session",
    )
    parser.add_argument(
        "--target",
        choices=("flamenco", "plain", "both"),
        default="flamenco",
        help="a real Server + Manager, bench/plain_dispatcher.py, or both one after the other",
    )
    parser.add_argument(
        "--plain-synchronous",
        choices=("NORMAL", "FULL"),
        default="NORMAL",
        help="SQLite synchronous of the plain dispatcher (WAL either way)",
    )
    parser.add_argument("--py-spy", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--keep", default=None, help="farm folder to keep (one worker count)")
    parser.add_argument(
        "--tmp-root", default=None, help="where the farm folder goes, e.g. /dev/shm (no fsync)"
    )
    args = parser.parse_args()
    info = machine()
    console.print(
        f"[dim]{info['nproc']} cores ({info['cpu_model']}), load average "
        f"{' '.join(f'{x:.2f}' for x in info['loadavg'])}[/dim]"
    )
    results = []
    for workers in args.workers:
        one = argparse.Namespace(**{**vars(args), "workers": workers})
        targets = ("plain", "flamenco") if args.target == "both" else (args.target,)
        for target in targets:
            console.print(f"[bold]{workers} simulated Workers against {target}[/bold]")
            result = run_plain(one) if target == "plain" else run_once(one)
            results.append(result)
            show(result)
            show_probes(result)
            show_pyspy(result)
    info["loadavg_end"] = list(os.getloadavg())
    if args.json:
        args.json.write_text(json.dumps({"machine": info, "runs": results}, indent=2, default=str))


if __name__ == "__main__":
    main()
