"""Server CPU per request of the routes a Manager calls, with one simulated Manager.

    .venv/bin/python bench/manager_routes.py [--tasks 200] [--queue 1000] [--json PATH]

A real Server runs as a process (tests/farmkit.TestFarm, SQLite, a temporary folder) with
jobs of --queue one-frame tasks waiting. This process plays one Manager, sequentially, over
one keep-alive connection, the way a Manager's link does for each task of a one-Worker site:

    POST /api/v1/manager/sync     {want: 1, held: [...]}      -> one lease
    POST /api/v1/manager/updates  [active]
    PUT  /api/v1/manager/tasks/{task}/frames/{frame}          (a small PNG)
    POST /api/v1/manager/updates  [completed]
    POST /api/v1/manager/sync     {want: 0, held: [...]}      (renewal)

then a batch of 20 updates (10 tasks, active and completed each) in one request.
The Server's CPU seconds (user + system, all threads, from /proc) are read around each
kind of request, so the figures are CPU milliseconds per request, which other load on the
machine inflates far less than wall time. Wall time per request is printed as well.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from simfarm import BASIC_BLEND, cpu_seconds, machine, new_update_id, submit_jobs

from farmkit import TestFarm
from flamenco import wire

WORKER = wire.WorkerSummary(name="w1", status="awake", blender_version="5.0.1")


def png_bytes() -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (160, 90), (200, 100, 50)).save(out, format="PNG")
    return out.getvalue()


def update(task_id: str, status: str) -> dict[str, Any]:
    return {"update_id": new_update_id(), "task_id": task_id, "status": status, "worker": "w1"}


class Meter:
    """CPU and wall time of the Server per kind of request."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.cpu: dict[str, float] = defaultdict(float)
        self.wall: dict[str, float] = defaultdict(float)
        self.count: dict[str, int] = defaultdict(int)

    def call(self, kind: str, send: Any) -> httpx.Response:
        cpu0, t0 = cpu_seconds(self.pid), time.perf_counter()
        response = send()
        self.wall[kind] += time.perf_counter() - t0
        self.cpu[kind] += cpu_seconds(self.pid) - cpu0
        self.count[kind] += 1
        response.raise_for_status()
        return response

    def table(self) -> dict[str, dict[str, float]]:
        return {
            kind: {
                "requests": self.count[kind],
                "cpu_ms": round(1000 * self.cpu[kind] / self.count[kind], 2),
                "wall_ms": round(1000 * self.wall[kind] / self.count[kind], 2),
            }
            for kind in self.count
        }


def run(farm: TestFarm, tasks: int, queue: int) -> dict[str, Any]:
    token = (
        farm.api()
        .call("POST", "/api/v1/managers", wire.TokenIssued, wire.ManagerCreate(name="bench"))
        .token
    )
    submit_jobs(farm, BASIC_BLEND, max(queue, tasks + 20), queue)
    server = next(p for p in farm.procs if p.label == "server")
    meter = Meter(server.pid)
    frame = png_bytes()
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=farm.server_url, headers=headers, timeout=60) as http:

        def sync(want: int, held: list[str]) -> wire.ManagerSyncReply:
            body = {"want": want, "held": held, "workers": [WORKER.model_dump(mode="json")]}
            kind = "sync, lease 1" if want else "sync, renew"
            reply = meter.call(kind, lambda: http.post("/api/v1/manager/sync", json=body))
            return wire.ManagerSyncReply.model_validate(reply.json())

        def updates(kind: str, batch: list[dict[str, Any]]) -> None:
            body = {"updates": batch}
            meter.call(kind, lambda: http.post("/api/v1/manager/updates", json=body))

        for _ in range(5):  # warm up: imports, caches, connections
            sync(0, [])
        held = [lease.task_id for lease in sync(2, []).leases]  # the prefetched pair
        cpu_start, wall_start = cpu_seconds(server.pid), time.perf_counter()
        for _ in range(tasks):
            (lease,) = sync(1, held).leases
            updates("updates, 1 (active)", [update(lease.task_id, "active")])
            meter.call(
                "frame upload",
                lambda lease=lease: http.put(
                    f"/api/v1/manager/tasks/{lease.task_id}/frames/{lease.frames[0]}",
                    params={"filename": f"frame_{lease.frames[0]:06d}.png"},
                    headers={"X-Flamenco-SHA256": _sha(frame)},
                    content=frame,
                ),
            )
            updates("updates, 1 (completed)", [update(lease.task_id, "completed")])
            sync(0, held)
        per_task_cpu = (cpu_seconds(server.pid) - cpu_start) / tasks
        per_task_wall = (time.perf_counter() - wall_start) / tasks
        for _ in range(max(1, tasks // 10)):
            leases = sync(1, held).leases + sync(1, held).leases
            batch = [update(lease.task_id, s) for lease in leases for s in ("active", "completed")]
            for _ in range(4):
                leases = sync(1, held).leases
                batch += [update(leases[0].task_id, s) for s in ("active", "completed")]
            updates("updates, batch of 12", batch)
    return {
        "per_request": meter.table(),
        "per_task_cpu_ms": round(1000 * per_task_cpu, 2),
        "per_task_wall_ms": round(1000 * per_task_wall, 2),
    }


def _sha(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--queue", type=int, default=1000, help="tasks per job waiting")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, TestFarm(Path(tmp) / "farm") as farm:
        farm.start_server()
        result = {"machine": machine(), **run(farm, args.tasks, args.queue)}
    for kind, row in result["per_request"].items():
        print(
            f"{kind:<26} {row['requests']:>5}  cpu {row['cpu_ms']:>7.2f} ms"
            f"  wall {row['wall_ms']:>7.2f} ms"
        )
    print(
        f"per task (5 requests): cpu {result['per_task_cpu_ms']} ms,"
        f" wall {result['per_task_wall_ms']} ms"
    )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
