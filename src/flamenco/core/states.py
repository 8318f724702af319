"""Job and task statuses, the transitions allowed between them, and job status derivation.

The tables here are the single source of truth: the Server checks every status change
against them, so a late or duplicated message from a Worker cannot move a task backwards.
"""

from collections.abc import Mapping
from enum import StrEnum


class JobStatus(StrEnum):
    """Status of a whole job; the value is what the API and database store."""

    QUEUED = "queued"
    ACTIVE = "active"
    PAUSED = "paused"
    PAUSE_REQUESTED = "pause-requested"
    CANCEL_REQUESTED = "cancel-requested"
    CANCELED = "canceled"
    REQUEUEING = "requeueing"
    COMPLETED = "completed"
    FAILED = "failed"


class TaskStatus(StrEnum):
    """Status of one task; the value is what the API and database store."""

    QUEUED = "queued"
    LEASED = "leased"
    ACTIVE = "active"
    COMPLETED = "completed"
    SOFT_FAILED = "soft-failed"
    FAILED = "failed"
    CANCELED = "canceled"
    PAUSED = "paused"


class InvalidTransition(ValueError):
    """A status change the tables forbid; the message is one sentence for logs and the API."""

    def __init__(self, kind: str, old: StrEnum, new: StrEnum) -> None:
        super().__init__(f"A {kind} cannot go from {old} to {new}.")
        self.kind = kind
        self.old = old
        self.new = new


_T = TaskStatus
TASK_TRANSITIONS: dict[TaskStatus, frozenset[TaskStatus]] = {
    _T.QUEUED: frozenset({_T.LEASED, _T.ACTIVE, _T.CANCELED, _T.PAUSED}),
    # leased -> queued happens when a Worker's lease expires before it starts the task.
    _T.LEASED: frozenset(
        {_T.ACTIVE, _T.QUEUED, _T.COMPLETED, _T.FAILED, _T.SOFT_FAILED, _T.CANCELED, _T.PAUSED}
    ),
    _T.ACTIVE: frozenset(
        {_T.COMPLETED, _T.FAILED, _T.SOFT_FAILED, _T.QUEUED, _T.CANCELED, _T.PAUSED}
    ),
    # soft-failed tasks are retried, so they may be picked up again or finish after all.
    _T.SOFT_FAILED: frozenset(
        {_T.QUEUED, _T.LEASED, _T.ACTIVE, _T.FAILED, _T.CANCELED, _T.PAUSED, _T.COMPLETED}
    ),
    _T.PAUSED: frozenset({_T.QUEUED, _T.CANCELED}),
    # Finished tasks only leave their status through an explicit requeue.
    _T.CANCELED: frozenset({_T.QUEUED}),
    _T.FAILED: frozenset({_T.QUEUED}),
    _T.COMPLETED: frozenset({_T.QUEUED}),
}

_J = JobStatus
JOB_TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    _J.QUEUED: frozenset(
        {
            _J.ACTIVE,
            _J.PAUSED,
            _J.PAUSE_REQUESTED,
            _J.CANCEL_REQUESTED,
            _J.CANCELED,
            _J.COMPLETED,
            _J.FAILED,
        }
    ),
    _J.ACTIVE: frozenset(
        {
            _J.COMPLETED,
            _J.FAILED,
            _J.PAUSE_REQUESTED,
            _J.CANCEL_REQUESTED,
            _J.PAUSED,
            _J.CANCELED,
            _J.QUEUED,
        }
    ),
    # Tasks still running while a pause is pending may finish or fail the whole job.
    _J.PAUSE_REQUESTED: frozenset(
        {_J.PAUSED, _J.CANCEL_REQUESTED, _J.CANCELED, _J.ACTIVE, _J.COMPLETED, _J.FAILED}
    ),
    _J.PAUSED: frozenset({_J.QUEUED, _J.ACTIVE, _J.CANCEL_REQUESTED, _J.CANCELED, _J.REQUEUEING}),
    # If the last tasks finish before the cancel lands, nothing was canceled after all.
    _J.CANCEL_REQUESTED: frozenset({_J.CANCELED, _J.COMPLETED}),
    _J.CANCELED: frozenset({_J.REQUEUEING, _J.QUEUED}),
    _J.FAILED: frozenset({_J.REQUEUEING, _J.QUEUED}),
    _J.COMPLETED: frozenset({_J.REQUEUEING, _J.QUEUED}),
    _J.REQUEUEING: frozenset({_J.QUEUED}),
}

TERMINAL_TASK_STATUSES: frozenset[TaskStatus] = frozenset(
    {TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELED}
)
"""Tasks in these statuses will not run again unless explicitly requeued."""

RUNNABLE_TASK_STATUSES: frozenset[TaskStatus] = frozenset(
    {TaskStatus.QUEUED, TaskStatus.SOFT_FAILED}
)
"""Tasks in these statuses may be leased to a Worker."""

RELEASING_TASK_STATUSES: frozenset[TaskStatus] = frozenset(
    {
        TaskStatus.COMPLETED,
        TaskStatus.FAILED,
        TaskStatus.SOFT_FAILED,
        TaskStatus.CANCELED,
        TaskStatus.PAUSED,
        TaskStatus.QUEUED,
    }
)
"""Statuses a Worker reports when its run of a task ends: it no longer holds the task."""

_SETTLED_JOB_STATUSES: frozenset[JobStatus] = frozenset(
    {_J.PAUSED, _J.CANCELED, _J.FAILED, _J.COMPLETED, _J.REQUEUEING}
)
"""Job statuses that only change through an explicit action (resume, requeue), never by tasks."""

FINISHED_JOB_STATUSES: frozenset[JobStatus] = frozenset({_J.COMPLETED, _J.FAILED, _J.CANCELED})
"""Jobs that are done: nothing of them runs again unless requeued (--keep-days removes them)."""


def check_task_transition(old: TaskStatus, new: TaskStatus) -> None:
    """Raise InvalidTransition unless a task may go from old to new (same status always may)."""
    if old != new and new not in TASK_TRANSITIONS[old]:
        raise InvalidTransition("task", old, new)


def check_job_transition(old: JobStatus, new: JobStatus) -> None:
    """Raise InvalidTransition unless a job may go from old to new (same status always may)."""
    if old != new and new not in JOB_TRANSITIONS[old]:
        raise InvalidTransition("job", old, new)


def job_status_from_tasks(
    current: JobStatus, counts: Mapping[TaskStatus, int], max_failed_tasks: int = 0
) -> JobStatus:
    """Return the job status implied by how many of its tasks are in each status.

    Rules, first match wins:

    1. A settled job (paused, canceled, failed, completed, requeueing) keeps its status;
       only an explicit resume or requeue moves it, never a task update.
    2. All tasks completed, or no tasks at all -> completed.
    3. More than `max_failed_tasks` tasks failed, or some failed and nothing else can still
       run -> failed, unless a cancel was requested (it then wins).
    4. Cancel requested and no task active or leased -> canceled.
    5. Pause requested and no task active or leased -> paused. Leased tasks count as
       running because their Worker may start them at any moment.
    6. Queued and any task leased, active, completed or soft-failed -> active.
    7. Otherwise the status is unchanged.

    The result is always `current` or a transition that check_job_transition allows.
    """
    if current in _SETTLED_JOB_STATUSES:
        return current
    total = sum(counts.values())
    in_flight = counts.get(TaskStatus.ACTIVE, 0) + counts.get(TaskStatus.LEASED, 0)
    if counts.get(TaskStatus.COMPLETED, 0) == total:
        return JobStatus.COMPLETED
    failed = counts.get(TaskStatus.FAILED, 0)
    unfinished = (
        total - failed - counts.get(TaskStatus.COMPLETED, 0) - counts.get(TaskStatus.CANCELED, 0)
    )
    too_many = failed > max_failed_tasks or (failed and not unfinished)
    if too_many and current != JobStatus.CANCEL_REQUESTED:
        return JobStatus.FAILED
    if current == JobStatus.CANCEL_REQUESTED and not in_flight:
        return JobStatus.CANCELED
    if current == JobStatus.PAUSE_REQUESTED and not in_flight:
        return JobStatus.PAUSED
    if current == JobStatus.QUEUED and _has_started(counts):
        return JobStatus.ACTIVE
    return current


def _has_started(counts: Mapping[TaskStatus, int]) -> bool:
    """Whether any task has been picked up by a Worker at some point."""
    started = (TaskStatus.LEASED, TaskStatus.ACTIVE, TaskStatus.COMPLETED, TaskStatus.SOFT_FAILED)
    return any(counts.get(status, 0) for status in started)
