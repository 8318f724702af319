"""The Manager's memory, kept on disk: its Workers and the tasks it holds leases for.

The Manager decides from memory and writes its changes behind, all changes of one turn of
the event loop in one SQLite transaction. A request whose answer must survive a crash (an
assignment, a registration, applied updates) awaits `saved()` before it answers, so a
restarted Manager has forgotten nothing that anyone was told.

Volatile facts are not written: progress, statistics and when a Worker was last seen. After a
restart every Worker that was not offline gets a fresh `last_seen`, a full timeout to check in.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from flamenco import wire
from flamenco.aio import TurnWriter
from flamenco.core.matching import Capabilities, Requirements
from flamenco.db import utcnow
from flamenco.store_versions import StoreMigration, open_store, script

SCHEMA = """
CREATE TABLE IF NOT EXISTS workers (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, token_hash TEXT NOT NULL UNIQUE,
    info TEXT NOT NULL, status TEXT NOT NULL, tasks TEXT NOT NULL, cancel TEXT NOT NULL,
    wanted TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS held_tasks (
    task_id TEXT PRIMARY KEY, seq INTEGER NOT NULL, lease TEXT NOT NULL,
    state TEXT NOT NULL, worker_id TEXT);
"""
# The store's versions (store_versions.py): append a migration to change a table.
MIGRATIONS: list[StoreMigration] = [script(SCHEMA)]


@dataclass(eq=False)
class HeldTask:
    """A task leased from the Server: queued here until a Worker takes it."""

    lease: wire.Lease
    seq: int
    lease_json: str  # serialised once: a lease carries the job's whole file list
    requirements: Requirements
    state: str = "queued"  # queued | assigned
    worker_id: str | None = None
    progress: float = 0.0
    activity: str = ""
    # The lease's, read on every pick and every write: plain attributes, not properties.
    task_id: str = field(init=False)
    job_id: str = field(init=False)
    priority: int = field(init=False)

    def __post_init__(self) -> None:
        lease = self.lease
        self.task_id, self.job_id, self.priority = lease.task_id, lease.job_id, lease.job_priority

    @classmethod
    def from_lease(cls, lease: wire.Lease, seq: int, lease_json: str | None = None) -> HeldTask:
        return cls(
            lease=lease,
            seq=seq,
            lease_json=lease_json or lease.model_dump_json(),
            requirements=Requirements.from_dict(lease.requirements),
        )


@dataclass(eq=False)
class WorkerState:
    id: str
    name: str
    token_hash: str
    info: dict[str, Any]
    status: str = "starting"
    # Tasks assigned to it, in order: the one it runs, then at most one reserved as its next.
    tasks: list[str] = field(default_factory=list)
    cancel: list[str] = field(default_factory=list)
    wanted: str = "awake"  # set by operators
    last_seen: datetime = field(default_factory=utcnow)
    stats: dict[str, Any] = field(default_factory=dict)
    _info_model: wire.WorkerInfo | None = None
    _capabilities: Capabilities | None = None
    _info_json: str | None = None

    def set_info(self, info: dict[str, Any]) -> None:
        self.info, self._info_model, self._capabilities, self._info_json = info, None, None, None

    @property
    def info_json(self) -> str:
        if self._info_json is None:
            self._info_json = json.dumps(self.info)
        return self._info_json

    @property
    def info_model(self) -> wire.WorkerInfo:
        if self._info_model is None:
            self._info_model = wire.WorkerInfo.model_validate(self.info)
        return self._info_model

    @property
    def current_task(self) -> str | None:
        return self.tasks[0] if self.tasks else None

    @property
    def capabilities(self) -> Capabilities:
        if self._capabilities is None:
            self._capabilities = self.info_model.capabilities()
        return self._capabilities


class ManagerStore:
    def __init__(self, path: Path, writer: TurnWriter | None = None) -> None:
        self.db = open_store(path, MIGRATIONS)
        self._tasks: dict[str, HeldTask | None] = {}  # changed since the last write; None: gone
        self._workers: dict[str, WorkerState] = {}
        # Rows already in the tables: a change of those rewrites the columns that change, not
        # the whole row (a held task's lease is its largest column and never changes).
        self._task_rows: set[str] = set()
        self._worker_rows: set[str] = set()
        self.writer = writer or TurnWriter()
        self.writer.add(self.write)

    # ---- reading at start --------------------------------------------------------------------

    def load_workers(self) -> list[WorkerState]:
        rows = self.db.execute(
            "SELECT id, name, token_hash, info, status, tasks, cancel, wanted FROM workers"
        ).fetchall()
        self._worker_rows = {r[0] for r in rows}
        return [
            WorkerState(
                id=r[0],
                name=r[1],
                token_hash=r[2],
                info=json.loads(r[3]),
                status=r[4],
                tasks=json.loads(r[5]),
                cancel=json.loads(r[6]),
                wanted=r[7],
            )
            for r in rows
        ]

    def load_tasks(self) -> list[HeldTask]:
        rows = self.db.execute(
            "SELECT seq, lease, state, worker_id FROM held_tasks ORDER BY seq"
        ).fetchall()
        tasks = []
        for seq, lease_json, state, worker_id in rows:
            held = HeldTask.from_lease(wire.Lease.model_validate_json(lease_json), seq, lease_json)
            held.state, held.worker_id = state, worker_id
            tasks.append(held)
        self._task_rows = {held.task_id for held in tasks}
        return tasks

    # ---- writing behind ----------------------------------------------------------------------

    def task_changed(self, held: HeldTask) -> None:
        self._tasks[held.task_id] = held
        self._schedule()

    def task_gone(self, task_id: str) -> None:
        self._tasks[task_id] = None
        self._task_rows.discard(task_id)  # should it come back, it gets a whole new row
        self._schedule()

    def worker_changed(self, worker: WorkerState) -> None:
        self._workers[worker.id] = worker
        self._schedule()

    async def saved(self) -> None:
        """Return once every change made so far is on disk."""
        await self.writer.written()

    def _schedule(self) -> None:
        self.writer.changed()

    def write(self) -> None:
        tasks, self._tasks = self._tasks, {}
        workers, self._workers = self._workers, {}
        if not (tasks or workers):
            return
        kept = [t for t in tasks.values() if t is not None]
        new_tasks = [t for t in kept if t.task_id not in self._task_rows]
        gone = [(task_id,) for task_id, t in tasks.items() if t is None]
        new_workers = [w for w in workers.values() if w.id not in self._worker_rows]
        with self.db:
            self.db.execute("BEGIN")
            self.db.executemany(
                "INSERT OR REPLACE INTO held_tasks (task_id, seq, lease, state, worker_id)"
                " VALUES (?, ?, ?, ?, ?)",
                [(t.task_id, t.seq, t.lease_json, t.state, t.worker_id) for t in new_tasks],
            )
            self.db.executemany(
                "UPDATE held_tasks SET state = ?, worker_id = ? WHERE task_id = ?",
                [(t.state, t.worker_id, t.task_id) for t in kept if t.task_id in self._task_rows],
            )
            self.db.executemany("DELETE FROM held_tasks WHERE task_id = ?", gone)
            self.db.executemany(
                "INSERT OR REPLACE INTO workers (id, name, token_hash, info, status,"
                " tasks, cancel, wanted) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [(w.id, w.name, w.token_hash, w.info_json, *_worker_state(w)) for w in new_workers],
            )
            self.db.executemany(
                "UPDATE workers SET status = ?, tasks = ?, cancel = ?, wanted = ?, info = ?"
                " WHERE id = ?",
                [
                    (*_worker_state(w), w.info_json, w.id)
                    for w in workers.values()
                    if w.id in self._worker_rows
                ],
            )
        self._task_rows.update(t.task_id for t in new_tasks)
        self._task_rows.difference_update(task_id for (task_id,) in gone)
        self._worker_rows.update(w.id for w in new_workers)

    def close(self) -> None:
        self.write()
        self.db.close()


def _worker_state(w: WorkerState) -> tuple[str, str, str, str]:
    """The columns of a Worker's row that change while it works."""
    return w.status, _list_json(w.tasks), _list_json(w.cancel), w.wanted


def _list_json(items: list[str]) -> str:
    return json.dumps(items) if items else "[]"  # most often empty, rewritten on every change
