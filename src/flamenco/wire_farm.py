"""The messages between the farm's own parts: task updates (Worker -> Manager -> Server), the
Manager's sync with the Server and the Worker's with its Manager. `wire.py` re-exports every
name here, so `wire.X` reaches these as it does the user-facing bodies.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterable
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    PrivateAttr,
    StringConstraints,
    ValidationError,
    model_validator,
)

from flamenco.core.faults import Fault
from flamenco.core.frames import quote_for_message
from flamenco.core.matching import Capabilities
from flamenco.core.states import TaskStatus
from flamenco.wire_types import JsonObject, Name, Strict, Wire

# ---- task updates (Worker -> Manager -> Server) ----------------------------------------------


def new_update_id() -> str:
    """A new update's id: 16 hex digits of the time in nanoseconds, then 16 random ones.
    Unique as a UUID is, and sorting by when it was made: the Server keeps every id in the
    primary key of `applied_updates`, and ids in about the order they arrive go to the end of
    that index, where random ones dirtied a page of it each (about 30 µs an update against 5
    once the table held 300,000)."""
    return f"{time.time_ns():016x}{secrets.token_hex(8)}"


class TaskUpdate(Strict):
    """One change of a task; update_id makes a replay harmless."""

    update_id: Annotated[str, StringConstraints(min_length=8, max_length=64)]
    task_id: str
    status: TaskStatus | None = None
    progress: float | None = Field(default=None, ge=0, le=1)
    activity: str | None = Field(default=None, max_length=500)
    log: list[str] = Field(default_factory=list, max_length=10_000)
    worker: str | None = None
    blender_pid: int | None = None
    error: str | None = Field(default=None, max_length=5000)
    fault: Fault | None = Field(
        default=None,
        description="With a failure: 'file' (the job's file cannot render anywhere: the job "
        "fails at once) or 'machine' (retried on another Worker).",
    )


class UpdateBatch(Strict):
    updates: list[TaskUpdate] = Field(max_length=1000)


class UpdatesApplied(Wire):
    applied: list[str]


class Progress(Strict):
    """Volatile progress: newer replaces older, so it is never queued in an outbox."""

    task_id: str
    progress: float = Field(ge=0, le=1)
    activity: str = Field(default="", max_length=500)


# ---- Manager <-> Server ------------------------------------------------------------------------


class GpuInfo(Wire):
    index: int
    vendor: str
    model: str
    memory_mb: int = 0
    backends: list[str] = Field(description="Cycles devices it can run: CUDA, OPTIX, HIP…")


class HasCapabilities(Wire):
    tags: list[str] = Field(default_factory=list)
    gpus: list[GpuInfo] = Field(default_factory=list)
    blender_version: str | None = Field(
        default=None, description="Its newest Blender; an older Flamenco's Worker sends only this."
    )
    blender_versions: list[str] = Field(
        default_factory=list, max_length=50, description="Every Blender it can render with."
    )
    commands: list[Annotated[str, StringConstraints(max_length=200)]] | None = Field(
        default=None,
        max_length=1000,
        description="The Worker commands it has (entry points flamenco.commands); none from "
        "a Worker older than commands, which is taken to run any task.",
    )

    def capabilities(self) -> Capabilities:
        backends = {backend for gpu in self.gpus for backend in gpu.backends}
        versions = self.blender_versions or [self.blender_version or ""]
        return Capabilities.of(self.tags, versions, backends, self.commands)


class WorkerInfo(HasCapabilities):
    """What a Worker is and can do; sent when it registers and when it starts again."""

    platform: str = ""
    cpu_count: int = 0
    memory_mb: int = 0


# Worker statuses in which a Worker takes (or is about to take) work.
WORKING_STATUSES = frozenset({"awake", "compiling-gpu-kernels"})


class WorkerStats(Wire):
    cpu_percent: float = 0.0
    memory_used_mb: int = 0


class WorkerSummary(HasCapabilities):
    name: str
    status: str  # awake, asleep, disabled, offline, compiling-gpu-kernels
    task_id: str | None = None
    last_seen: datetime | None = None
    platform: str = ""
    cpu_count: int = 0
    memory_mb: int = 0
    cpu_percent: float = 0.0
    memory_used_mb: int = 0
    progress: float = 0.0
    activity: str = ""


def worker_summaries(rows: Iterable[Any]) -> tuple[list[WorkerSummary], list[str]]:
    """The rows that are valid Worker summaries, and one sentence for each that is not.

    One Worker's bad row (say from an older Manager) must not cost its site its other Workers,
    so the rows are parsed one by one.
    """
    valid, problems = [], []
    for row in rows:
        try:
            valid.append(WorkerSummary.model_validate(row))
        except ValidationError as exc:
            name = row.get("name") if isinstance(row, dict) else None
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"]) or "the row"
            problems.append(f"Worker {quote_for_message(name)}: {where}: {first['msg']}")
    return valid, problems


class ManagerSync(Strict):
    want: int = Field(default=0, ge=0, le=10_000, description="How many more tasks to lease.")
    held: list[str] = Field(default_factory=list, description="Task ids still held; renews them.")
    progress: list[Progress] = Field(default_factory=list)
    workers: list[WorkerSummary] | None = Field(
        default=None,
        description="The Manager's Workers; left out (null) when unchanged since its last sync "
        "but for their load and progress, which then go up about once a second.",
    )
    wait_s: float = Field(
        default=0,
        ge=0,
        le=60,
        description="With want > 0 and no task for it: how long the Server may hold the sync "
        "until there is one, or something else the Manager must learn (long poll).",
    )
    handed_back: list[str] = Field(
        default_factory=list,
        max_length=10_000,
        description="Held task ids none of the Manager's Workers may run: queued again for "
        "other sites.",
    )
    _dropped_workers: list[str] = PrivateAttr(default_factory=list)

    @model_validator(mode="wrap")
    @classmethod
    def _drop_bad_worker_rows(
        cls, data: Any, handler: ModelWrapValidatorHandler[ManagerSync]
    ) -> ManagerSync:
        dropped: list[str] = []
        if isinstance(data, dict) and isinstance(data.get("workers"), list):
            workers, dropped = worker_summaries(data["workers"])
            data = {**data, "workers": workers}
        sync = handler(data)
        sync._dropped_workers = dropped
        return sync

    @property
    def dropped_workers(self) -> list[str]:
        """A sentence for each Worker row that was left out because it was invalid."""
        return self._dropped_workers


class Lease(Wire):
    task_id: str
    job_id: str
    job_name: str
    job_priority: int
    type: str
    name: str
    frames: list[int]
    command: JsonObject
    files: dict[str, str]
    lease_expires: datetime
    requirements: JsonObject = Field(default_factory=dict)
    failed_by: list[str] = Field(default_factory=list, description="Workers that failed it.")


class ManagerSyncReply(Wire):
    leases: list[Lease]
    revoked: list[str] = Field(description="Task ids the Manager must stop and drop.")
    next_sync_s: float
    blocklist: dict[str, list[str]] = Field(
        default_factory=dict, description="Job id -> Workers of this Manager kept off it."
    )
    worker_states: dict[str, str] = Field(
        default_factory=dict, description="Worker name -> awake, asleep or disabled."
    )
    metrics_tokens: list[str] = Field(
        default_factory=list,
        description="SHA-256 hashes (never the tokens) of the live metrics tokens, which the "
        "Manager's /metrics accepts.",
    )


# ---- Worker <-> Manager ------------------------------------------------------------------------


class WorkerRegistration(WorkerInfo):
    model_config = ConfigDict(extra="forbid")
    secret: str
    name: Name


class WorkerRegistered(Wire):
    worker_id: str
    token: str


class WorkerSync(Strict):
    want_task: bool = False
    wait_s: float = Field(default=0, ge=0, le=30)
    warm_job_id: str | None = None
    progress: Progress | None = None
    # What the Worker is doing; "offline" signs it off as it stops (its tasks go to others).
    status: Literal["awake", "asleep", "disabled", "compiling-gpu-kernels", "offline"] = "awake"
    running_task_id: str | None = None
    # The task it holds as its next: with want_task while running, it reserves that next task.
    next_task_id: str | None = None
    info: WorkerInfo | None = None
    stats: WorkerStats | None = None
    # A task's last updates ride along with the request for the next task: one round trip.
    updates: list[TaskUpdate] = Field(default_factory=list, max_length=1000)


class Assignment(Wire):
    task_id: str
    job_id: str
    job_name: str
    name: str
    type: str
    frames: list[int]
    command: JsonObject
    files: dict[str, str]


class WorkerSyncReply(Wire):
    assignment: Assignment | None = None
    cancel: list[str] = Field(default_factory=list)
    next_sync_s: float = 1.0
    state: str = "awake"  # what the farm's operators want: awake, asleep or disabled
    applied: list[str] = Field(default_factory=list)  # ids of the updates that came along
