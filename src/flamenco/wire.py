"""Every request and response body on the farm's wire, shared by all components.

The Server, the Manager, the Worker, the CLI and the add-on speak through these models only,
so a change here is a change of protocol, visible in each service's OpenAPI document.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    PrivateAttr,
    RootModel,
    StringConstraints,
    ValidationError,
    model_validator,
)

from flamenco.core.faults import Fault
from flamenco.core.frames import quote_for_message
from flamenco.core.matching import Capabilities
from flamenco.core.states import JobStatus, TaskStatus
from flamenco.wire_types import JsonObject, Name, RelativePath, Sha256


class Wire(BaseModel):
    """The base of every model here: NaN and infinity are refused wherever a number goes, so
    that a value one component accepts never makes another refuse what carries it."""

    model_config = ConfigDict(allow_inf_nan=False)


class Strict(Wire):
    model_config = ConfigDict(extra="forbid")


class ErrorBody(Wire):
    detail: str


# ---- blobs ---------------------------------------------------------------------------------


class BlobQuery(Strict):
    hashes: list[Sha256] = Field(max_length=100_000)


class BlobQueryResult(Wire):
    missing: list[str]


class UploadOffset(Wire):
    """How much of an upload the receiver keeps: resume a dropped upload at `offset`
    (`Content-Range: bytes OFFSET-*/TOTAL`); `complete` once the blob is in place."""

    sha256: str
    offset: int = Field(ge=0)
    complete: bool = False


# ---- users and tokens ----------------------------------------------------------------------


class LoginRequest(Strict):
    username: Name
    password: str = Field(min_length=1, max_length=1000)


class TokenIssued(Wire):
    token: str
    name: str


class TokenInfo(Wire):
    """A user's token as listed: never the token itself, which only its holder knows."""

    id: int
    user: str
    label: str
    created: datetime
    expires: datetime | None  # None: never
    last_used: datetime | None
    current: bool  # the token this request was made with


TokenList = RootModel[list[TokenInfo]]


class UserCreate(Strict):
    name: Name
    password: str = Field(min_length=8, max_length=1000)
    admin: bool = False


class UserInfo(Wire):
    name: str
    admin: bool


class PasswordChange(Strict):
    password: str = Field(min_length=8, max_length=1000)


class PriorityChange(Strict):
    priority: int = Field(ge=0, le=100)


class ManagerCreate(Strict):
    name: Name


# ---- jobs ----------------------------------------------------------------------------------


class JobSubmission(Strict):
    name: Name
    type: str = "blender-render"
    priority: int = Field(default=50, ge=0, le=100)
    files: dict[RelativePath, Sha256] = Field(
        description="Path inside the job's folder -> blob hash."
    )
    settings: JsonObject
    sites: list[Name] = Field(default_factory=list, description="Managers allowed; empty: any.")
    notify: str | None = Field(
        default=None,
        max_length=2000,
        description="An http(s) URL the Server POSTs a signed JobEnded document to when the "
        "job completes, fails or is canceled (besides the Server's own notify_url).",
    )
    after: list[Annotated[str, StringConstraints(max_length=64)]] = Field(
        default_factory=list,
        max_length=100,
        description="Ids of jobs that must complete before this one starts (submit --after).",
    )


class JobTypeInfo(Wire):
    """An installed job type (GET /api/v1/job-types, `flamenco job-types`, the add-on's panel)."""

    name: str
    label: str
    description: str
    settings_schema: dict[str, Any] = Field(
        description="The JSON schema of its settings (JobSubmission.settings); a field whose "
        "schema has flamenco_file names a file: 'scene' the job's .blend, 'local' a file the "
        "submitter uploads with the job."
    )


class Job(Wire):
    id: str
    name: str
    type: str
    status: JobStatus
    priority: int
    submitter: str
    settings: JsonObject
    created: datetime
    updated: datetime
    tasks_total: int
    tasks_completed: int
    frames_total: int
    frames_done: int
    progress: float
    output_dir: str
    sites: list[str]
    waiting_reason: str | None = None
    after: list[str] = Field(
        default_factory=list, description="Ids of the jobs this one waits for (submit --after)."
    )
    blocklist: list[str] = Field(default_factory=list)
    last_error: str | None = Field(
        default=None, description="The latest error a task of the job failed with."
    )


class JobEnded(Wire):
    """What the Server POSTs to a job's notification URLs when it completes, fails or is
    canceled, signed (core/notify.py, README "Notifications")."""

    event: str = Field(default="job-ended", description="Always 'job-ended'.")
    job_id: str
    name: str
    status: JobStatus = Field(description="completed, failed or canceled.")
    submitter: str
    frames_done: int
    frames_total: int
    frames: list[int] = Field(description="The frame numbers rendered and stored.")
    frames_url: str = Field(description="The Server's API address of the job's frames.")
    dashboard_url: str = Field(description="The job's page on the Dashboard.")
    ended: datetime


class NotifySecret(Wire):
    """The key the Server signs its notifications with (administrators only)."""

    secret: str
    created: datetime


class JobUnblock(Strict):
    """Let Workers kept off a job after repeated failures take its tasks again."""

    worker: Name | None = Field(default=None, description="Only this Worker; none: all.")


class Task(Wire):
    id: str
    job_id: str
    index: int
    name: str
    type: str
    status: TaskStatus
    frames: list[int]
    progress: float
    activity: str
    manager: str | None
    worker: str | None
    blender_pid: int | None
    failure_count: int
    updated: datetime


class TaskEvent(Wire):
    """A status report about a task, and whether it counted."""

    task_id: str
    status: TaskStatus
    outcome: str  # applied | ignored | invalid-transition | unknown-task
    worker: str | None
    manager: str | None
    at: datetime


class TaskRun(Wire):
    """One Worker rendering one task, from its `active` report until the next status
    (see flamenco.core.runs); `end` is None while it renders."""

    task_id: str
    task_name: str
    worker: str
    start: datetime
    end: datetime | None
    outcome: str  # running, or the status that ended it


class TaskPage(Wire):
    """Some of a job's tasks in their order, with what a table of them needs besides."""

    total: int = Field(description="How many tasks the job has.")
    counts: dict[str, int] = Field(description="Task status -> how many of the job's tasks.")
    matching: int = Field(description="How many tasks match the status and text asked for.")
    offset: int
    limit: int
    tasks: list[Task]
    runs: list[TaskRun] = Field(description="Every run of the tasks on this page.")
    started: datetime | None = Field(description="When the job's first run started.")


class JobRuns(Wire):
    """Every run of every task of a job, in the order they started: its timeline."""

    started: datetime | None
    runs: list[TaskRun]


class FrameInfo(Wire):
    frame: int
    task_id: str
    sha256: str
    size: int
    width: int | None
    height: int | None
    filename: str


class ArtifactInfo(Wire):
    """Another output of a job than its frames, such as its preview video."""

    name: str
    task_id: str
    sha256: str
    size: int
    created: datetime


# ---- task updates (Worker -> Manager -> Server) ----------------------------------------------


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

    def capabilities(self) -> Capabilities:
        backends = {backend for gpu in self.gpus for backend in gpu.backends}
        versions = self.blender_versions or [self.blender_version or ""]
        return Capabilities.of(self.tags, versions, backends)


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


class ManagerInfo(Wire):
    name: str
    status: str  # online | offline | revoked (its token)
    last_seen: datetime | None
    address: str
    workers: list[WorkerSummary]


ManagerList = RootModel[list[ManagerInfo]]


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
    status: str = "awake"
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


JobList = RootModel[list[Job]]
TaskEventList = RootModel[list[TaskEvent]]
TaskList = RootModel[list[Task]]
FrameList = RootModel[list[FrameInfo]]
ArtifactList = RootModel[list[ArtifactInfo]]
