"""Job actions, table-driven: every plan only makes transitions the state tables allow."""

from __future__ import annotations

import pytest

from flamenco.core.actions import ActionNotAllowed, JobAction, plan_job_action
from flamenco.core.states import (
    JobStatus,
    TaskStatus,
    check_job_transition,
    check_task_transition,
)

J, T, A = JobStatus, TaskStatus, JobAction


@pytest.mark.parametrize(
    ("action", "job", "new_job", "changes"),
    [
        (A.PAUSE, J.ACTIVE, J.PAUSED, {T.ACTIVE: T.PAUSED, T.QUEUED: T.PAUSED}),
        (A.PAUSE, J.QUEUED, J.PAUSED, {T.QUEUED: T.PAUSED, T.LEASED: T.PAUSED}),
        (A.RESUME, J.PAUSED, J.QUEUED, {T.PAUSED: T.QUEUED}),
        (A.CANCEL, J.ACTIVE, J.CANCELED, {T.ACTIVE: T.CANCELED, T.SOFT_FAILED: T.CANCELED}),
        (A.CANCEL, J.PAUSED, J.CANCELED, {T.PAUSED: T.CANCELED}),
        (A.REQUEUE, J.COMPLETED, J.QUEUED, {T.COMPLETED: T.QUEUED}),
        (A.REQUEUE, J.FAILED, J.QUEUED, {T.FAILED: T.QUEUED, T.COMPLETED: T.QUEUED}),
        (A.REQUEUE_FAILED, J.FAILED, J.QUEUED, {T.FAILED: T.QUEUED, T.CANCELED: T.QUEUED}),
        # A job that still runs (stuck with its Workers blocklisted) starts afresh.
        (A.REQUEUE, J.ACTIVE, J.QUEUED, {T.ACTIVE: T.QUEUED, T.SOFT_FAILED: T.QUEUED}),
        (A.REQUEUE_FAILED, J.ACTIVE, J.QUEUED, {T.SOFT_FAILED: T.QUEUED}),
    ],
)
def test_plans(action: A, job: J, new_job: J, changes: dict[T, T]) -> None:
    plan = plan_job_action(action, job)
    assert plan.job_status == new_job
    for old, new in changes.items():
        assert plan.task_changes[old] == new


@pytest.mark.parametrize(
    ("action", "job", "unchanged"),
    [
        (A.CANCEL, J.ACTIVE, T.COMPLETED),  # finished work stays finished
        (A.PAUSE, J.ACTIVE, T.COMPLETED),
        (A.REQUEUE_FAILED, J.FAILED, T.COMPLETED),
        (A.REQUEUE_FAILED, J.ACTIVE, T.ACTIVE),
        (A.RESUME, J.PAUSED, T.COMPLETED),
    ],
)
def test_plans_leave_tasks_alone(action: A, job: J, unchanged: T) -> None:
    assert unchanged not in plan_job_action(action, job).task_changes


@pytest.mark.parametrize(
    ("action", "job"),
    [
        (A.PAUSE, J.COMPLETED),
        (A.PAUSE, J.PAUSED),
        (A.RESUME, J.ACTIVE),
        (A.CANCEL, J.COMPLETED),
        (A.CANCEL, J.CANCELED),
        (A.REQUEUE, J.PAUSED),
        (A.REQUEUE_FAILED, J.CANCEL_REQUESTED),
    ],
)
def test_actions_that_make_no_sense_say_why(action: A, job: J) -> None:
    with pytest.raises(ActionNotAllowed, match=rf"^A job that is {job} cannot .*\.$"):
        plan_job_action(action, job)


@pytest.mark.parametrize("action", list(A))
@pytest.mark.parametrize("job", list(J))
def test_every_plan_respects_the_state_tables(action: A, job: J) -> None:
    try:
        plan = plan_job_action(action, job)
    except ActionNotAllowed:
        return
    check_job_transition(job, plan.job_status)
    for old, new in plan.task_changes.items():
        check_task_transition(old, new)
