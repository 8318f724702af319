"""Every request and response body on the farm's wire, shared by all components.

The Server, the Manager, the Worker, the CLI and the add-on speak through these models only,
so a change here is a change of protocol, visible in each service's OpenAPI document.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import Field, RootModel, StringConstraints

from flamenco.core.states import JobStatus, TaskStatus

# The farm's own messages (wire_farm.py), re-exported: `wire.X` reaches them too.
from flamenco.wire_farm import (  # noqa: F401
    WORKING_STATUSES,
    Assignment,
    GpuInfo,
    HasCapabilities,
    Lease,
    ManagerSync,
    ManagerSyncReply,
    Progress,
    TaskUpdate,
    UpdateBatch,
    UpdatesApplied,
    WorkerInfo,
    WorkerRegistered,
    WorkerRegistration,
    WorkerStats,
    WorkerSummary,
    WorkerSync,
    WorkerSyncReply,
    new_update_id,
    worker_summaries,
)
from flamenco.wire_types import JsonObject, Name, RelativePath, Sha256, Strict, Wire


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
    started: datetime | None = Field(
        default=None, description="When the job's first run started; null before it ran."
    )
    frame_extensions: list[str] | None = Field(
        default=None,
        description="The extensions of the job's frames stored so far ('.exr'), lowercase and "
        "sorted; in a job's own answer only, not in the list of jobs.",
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
    """Every run of every task of a job (or, asked with `last`, of its last tasks to start),
    in the order they started: its timeline."""

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


class FramePage(Wire):
    """Some of a job's rendered frames in frame order, with how many it has in all."""

    total: int = Field(description="How many rendered frames the job has.")
    offset: int
    limit: int
    frames: list[FrameInfo]


class ArtifactInfo(Wire):
    """Another output of a job than its frames, such as its preview video."""

    name: str
    task_id: str
    sha256: str
    size: int
    created: datetime


class ManagerInfo(Wire):
    name: str
    status: str  # online | offline | revoked (its token)
    last_seen: datetime | None
    address: str
    workers: list[WorkerSummary]


ManagerList = RootModel[list[ManagerInfo]]


JobList = RootModel[list[Job]]
TaskEventList = RootModel[list[TaskEvent]]
TaskList = RootModel[list[Task]]
FrameList = RootModel[list[FrameInfo]]
ArtifactList = RootModel[list[ArtifactInfo]]
