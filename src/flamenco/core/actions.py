"""What a user's action on a job does to the job and to each of its tasks.

Pure: given the action and the current statuses, the plan says the job's new status and,
for each task status, what a task in it becomes. The Server applies the plan in one
transaction; tasks it takes away from a Manager are revoked at that Manager's next sync,
which stops their Blender.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from flamenco.core.states import JobStatus, TaskStatus

_J, _T = JobStatus, TaskStatus


class JobAction(StrEnum):
    PAUSE = "pause"
    RESUME = "resume"
    CANCEL = "cancel"
    REQUEUE = "requeue"  # everything again
    REQUEUE_FAILED = "requeue-failed"  # only what failed or was canceled (or is retrying)


class ActionNotAllowed(ValueError):
    """The action makes no sense for the job's status; the message says why."""


@dataclass(frozen=True)
class ActionPlan:
    job_status: JobStatus
    task_changes: Mapping[TaskStatus, TaskStatus] = field(default_factory=dict)
    reset_failures: bool = False


_UNFINISHED = (_T.QUEUED, _T.LEASED, _T.ACTIVE, _T.SOFT_FAILED, _T.PAUSED)
_FINISHED = (_T.COMPLETED, _T.FAILED, _T.CANCELED)
# A requeue also works on a job that still runs: one stuck because its Workers were kept off
# it after failing it starts afresh (the Server clears the job's blocklist with a requeue).
_REQUEUEABLE = frozenset({_J.COMPLETED, _J.FAILED, _J.CANCELED, _J.QUEUED, _J.ACTIVE})

_PLANS: dict[JobAction, tuple[frozenset[JobStatus], ActionPlan]] = {
    JobAction.PAUSE: (
        frozenset({_J.QUEUED, _J.ACTIVE}),
        ActionPlan(_J.PAUSED, {s: _T.PAUSED for s in _UNFINISHED}),
    ),
    JobAction.RESUME: (
        frozenset({_J.PAUSED}),
        ActionPlan(_J.QUEUED, {_T.PAUSED: _T.QUEUED}),
    ),
    JobAction.CANCEL: (
        frozenset({_J.QUEUED, _J.ACTIVE, _J.PAUSED, _J.PAUSE_REQUESTED}),
        ActionPlan(_J.CANCELED, {s: _T.CANCELED for s in _UNFINISHED}),
    ),
    JobAction.REQUEUE: (
        _REQUEUEABLE,
        ActionPlan(
            _J.QUEUED,
            {s: _T.QUEUED for s in (*_FINISHED, _T.SOFT_FAILED, _T.LEASED, _T.ACTIVE)},
            reset_failures=True,
        ),
    ),
    JobAction.REQUEUE_FAILED: (
        _REQUEUEABLE,
        ActionPlan(
            _J.QUEUED,
            {s: _T.QUEUED for s in (_T.FAILED, _T.CANCELED, _T.SOFT_FAILED)},
            reset_failures=True,
        ),
    ),
}


def plan_job_action(action: JobAction, current: JobStatus) -> ActionPlan:
    """The plan for `action` on a job in `current`, or ActionNotAllowed saying why not."""
    allowed, plan = _PLANS[action]
    if current not in allowed:
        choices = ", ".join(sorted(allowed))
        raise ActionNotAllowed(
            f"A job that is {current} cannot {action.replace('-', ' ')}; "
            f"that works for jobs that are {choices}."
        )
    return plan
