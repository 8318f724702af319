"""The plain alternative to a Manager, as a reference for bench/dispatch.py --target plain.

    .venv/bin/python bench/plain_dispatcher.py --db PATH --port N --token T --tasks N
        [--lease-s 60] [--synchronous NORMAL|FULL]

A single FastAPI process (uvicorn, one event loop) over one SQLite file, with what a Manager
keeps and nothing more:
  - leases: an assignment holds its task until `lease_expires`; an expired lease is taken
    again by the next Worker that asks (no reaper: the covering index finds them);
  - durability: WAL journal, `synchronous` NORMAL by default (FULL with --synchronous FULL):
    one transaction (BEGIN IMMEDIATE ... COMMIT) per assignment and per completion;
  - authentication: registering needs the join secret (--token); it hands a Worker the
    bearer token `NAME.HMAC(secret, NAME)`, which every sync must carry (checked in constant
    time), else 401. The name in the token is the Worker a lease belongs to.

It speaks the Manager's Worker route, `POST /api/v1/worker/sync` with {want_task, updates},
so that the same simulated Workers drive it: a completion in `updates` is applied in its own
transaction, then, if `want_task`, the next task is picked by the covering index
(status, priority DESC, id) and leased in one transaction. No long poll: with no task it
answers {"assignment": null} at once.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import sqlite3
import threading
import time
import uuid
from typing import Any

import uvicorn
from fastapi import FastAPI, HTTPException, Request

SCHEMA = """
CREATE TABLE IF NOT EXISTS tasks (
    id INTEGER PRIMARY KEY,
    job_id TEXT NOT NULL,
    frame INTEGER NOT NULL,
    priority INTEGER NOT NULL DEFAULT 50,
    status TEXT NOT NULL DEFAULT 'queued',
    worker TEXT,
    lease_expires REAL NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS tasks_pick ON tasks (status, priority DESC, id, lease_expires);
"""


class PlainStore:
    """The SQLite side: one connection, used under one lock (SQLite serialises writers)."""

    def __init__(self, path: str, synchronous: str, lease_s: float) -> None:
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute(f"PRAGMA synchronous={synchronous}")
        self.db.executescript(SCHEMA)
        self.lease_s = lease_s
        self.lock = threading.Lock()

    def fill(self, tasks: int, job_size: int = 1000) -> None:
        with self.lock:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.executemany(
                "INSERT INTO tasks (job_id, frame) VALUES (?, ?)",
                ((f"job-{i // job_size:04d}", i % job_size + 1) for i in range(tasks)),
            )
            self.db.execute("COMMIT")

    def assign(self, worker: str) -> dict[str, Any] | None:
        """Lease the first queued task, or one whose lease expired: one transaction."""
        now = time.time()
        with self.lock:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                row = self.db.execute(
                    "SELECT id, job_id, frame FROM tasks WHERE status = 'queued' "
                    "ORDER BY priority DESC, id LIMIT 1"
                ).fetchone()
                if row is None:
                    row = self.db.execute(
                        "SELECT id, job_id, frame FROM tasks WHERE status = 'leased' "
                        "AND lease_expires < ? ORDER BY priority DESC, id LIMIT 1",
                        (now,),
                    ).fetchone()
                if row is not None:
                    self.db.execute(
                        "UPDATE tasks SET status = 'leased', worker = ?, lease_expires = ? "
                        "WHERE id = ?",
                        (worker, now + self.lease_s, row[0]),
                    )
                self.db.execute("COMMIT")
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
        if row is None:
            return None
        return {"task_id": str(row[0]), "job_id": row[1], "frames": [row[2]]}

    def complete(self, worker: str, task_id: str) -> bool:
        """Mark a task done if this Worker still holds its lease: one transaction."""
        with self.lock:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                changed = self.db.execute(
                    "UPDATE tasks SET status = 'completed' WHERE id = ? AND worker = ? "
                    "AND status = 'leased'",
                    (int(task_id), worker),
                ).rowcount
                self.db.execute("COMMIT")
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
        return changed == 1


def create_app(store: PlainStore, token: str) -> FastAPI:
    app = FastAPI()
    key = token.encode()

    def signature(name: str) -> str:
        return hmac.new(key, name.encode(), hashlib.sha256).hexdigest()

    def worker_of(request: Request) -> str:
        given = request.headers.get("authorization", "").removeprefix("Bearer ")
        name, _, mac = given.rpartition(".")
        if not name or not hmac.compare_digest(mac, signature(name)):
            raise HTTPException(401, "A valid bearer token is needed.")
        return name

    @app.post("/api/v1/workers/register")
    async def register(body: dict[str, Any]) -> dict[str, str]:
        if not hmac.compare_digest(str(body.get("secret", "")), token):
            raise HTTPException(401, "The join secret is wrong.")
        name = str(body.get("name") or uuid.uuid4().hex)
        return {"token": f"{name}.{signature(name)}", "id": name}

    @app.post("/api/v1/worker/sync")
    async def sync(request: Request, body: dict[str, Any]) -> dict[str, Any]:
        worker = worker_of(request)
        for update in body.get("updates") or []:
            if update.get("status") == "completed":
                store.complete(worker, str(update["task_id"]))
        assignment = None
        if body.get("want_task"):
            assignment = store.assign(worker)
            if assignment is not None:
                assignment["worker"] = worker
        return {"assignment": assignment, "cancel": []}

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--db", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--tasks", type=int, default=50_000)
    parser.add_argument("--lease-s", type=float, default=60.0)
    parser.add_argument("--synchronous", choices=("NORMAL", "FULL"), default="NORMAL")
    args = parser.parse_args()
    store = PlainStore(args.db, args.synchronous, args.lease_s)
    store.fill(args.tasks)
    uvicorn.run(
        create_app(store, args.token),
        host="127.0.0.1",
        port=args.port,
        log_level="warning",
        access_log=False,
        http="httptools",
        loop="uvloop",
    )


if __name__ == "__main__":
    main()
