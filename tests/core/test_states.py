"""Table-driven tests for flamenco.core.states."""

import itertools

import pytest

from flamenco.core.states import (
    JOB_TRANSITIONS,
    RUNNABLE_TASK_STATUSES,
    TASK_TRANSITIONS,
    TERMINAL_TASK_STATUSES,
    InvalidTransition,
    JobStatus,
    TaskStatus,
    check_job_transition,
    check_task_transition,
    job_status_from_tasks,
)

T = TaskStatus
J = JobStatus


def test_enum_values() -> None:
    assert J.PAUSE_REQUESTED == "pause-requested"
    assert J.CANCEL_REQUESTED == "cancel-requested"
    assert T.SOFT_FAILED == "soft-failed"
    assert {str(s) for s in J} == {
        "queued", "active", "paused", "pause-requested", "cancel-requested",
        "canceled", "requeueing", "completed", "failed",
    }  # fmt: skip
    assert {str(s) for s in T} == {
        "queued", "leased", "active", "completed", "soft-failed", "failed", "canceled", "paused",
    }  # fmt: skip


def test_tables_cover_every_status() -> None:
    assert set(TASK_TRANSITIONS) == set(TaskStatus)
    assert set(JOB_TRANSITIONS) == set(JobStatus)


def test_status_groups() -> None:
    assert {T.COMPLETED, T.FAILED, T.CANCELED} == TERMINAL_TASK_STATUSES
    assert {T.QUEUED, T.SOFT_FAILED} == RUNNABLE_TASK_STATUSES


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (T.QUEUED, T.LEASED),
        (T.QUEUED, T.ACTIVE),
        (T.QUEUED, T.CANCELED),
        (T.QUEUED, T.PAUSED),
        (T.LEASED, T.ACTIVE),
        (T.LEASED, T.QUEUED),
        (T.LEASED, T.COMPLETED),
        (T.LEASED, T.SOFT_FAILED),
        (T.ACTIVE, T.COMPLETED),
        (T.ACTIVE, T.FAILED),
        (T.ACTIVE, T.SOFT_FAILED),
        (T.ACTIVE, T.QUEUED),
        (T.ACTIVE, T.PAUSED),
        (T.SOFT_FAILED, T.QUEUED),
        (T.SOFT_FAILED, T.LEASED),
        (T.SOFT_FAILED, T.COMPLETED),
        (T.SOFT_FAILED, T.FAILED),
        (T.PAUSED, T.QUEUED),
        (T.PAUSED, T.CANCELED),
        (T.CANCELED, T.QUEUED),
        (T.FAILED, T.QUEUED),
        (T.COMPLETED, T.QUEUED),
        *((status, status) for status in TaskStatus),
    ],
)
def test_allowed_task_transitions(old: TaskStatus, new: TaskStatus) -> None:
    check_task_transition(old, new)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (T.COMPLETED, T.ACTIVE),
        (T.COMPLETED, T.FAILED),
        (T.COMPLETED, T.LEASED),
        (T.FAILED, T.ACTIVE),
        (T.FAILED, T.COMPLETED),
        (T.CANCELED, T.ACTIVE),
        (T.CANCELED, T.COMPLETED),
        (T.QUEUED, T.COMPLETED),
        (T.QUEUED, T.FAILED),
        (T.QUEUED, T.SOFT_FAILED),
        (T.ACTIVE, T.LEASED),
        (T.PAUSED, T.ACTIVE),
        (T.PAUSED, T.LEASED),
        (T.PAUSED, T.COMPLETED),
    ],
)
def test_forbidden_task_transitions(old: TaskStatus, new: TaskStatus) -> None:
    with pytest.raises(InvalidTransition) as caught:
        check_task_transition(old, new)
    assert str(caught.value) == f"A task cannot go from {old} to {new}."
    assert (caught.value.kind, caught.value.old, caught.value.new) == ("task", old, new)


def test_forbidden_task_transition_message() -> None:
    with pytest.raises(InvalidTransition, match=r"^A task cannot go from completed to active\.$"):
        check_task_transition(T.COMPLETED, T.ACTIVE)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (J.QUEUED, J.ACTIVE),
        (J.QUEUED, J.PAUSE_REQUESTED),
        (J.QUEUED, J.CANCELED),
        (J.QUEUED, J.COMPLETED),
        (J.ACTIVE, J.COMPLETED),
        (J.ACTIVE, J.FAILED),
        (J.ACTIVE, J.PAUSE_REQUESTED),
        (J.ACTIVE, J.CANCEL_REQUESTED),
        (J.ACTIVE, J.QUEUED),
        (J.PAUSE_REQUESTED, J.PAUSED),
        (J.PAUSE_REQUESTED, J.ACTIVE),
        (J.PAUSE_REQUESTED, J.CANCEL_REQUESTED),
        (J.PAUSE_REQUESTED, J.COMPLETED),
        (J.PAUSE_REQUESTED, J.FAILED),
        (J.PAUSED, J.QUEUED),
        (J.PAUSED, J.ACTIVE),
        (J.PAUSED, J.REQUEUEING),
        (J.CANCEL_REQUESTED, J.CANCELED),
        (J.CANCEL_REQUESTED, J.COMPLETED),
        (J.CANCELED, J.REQUEUEING),
        (J.CANCELED, J.QUEUED),
        (J.FAILED, J.REQUEUEING),
        (J.COMPLETED, J.QUEUED),
        (J.REQUEUEING, J.QUEUED),
        *((status, status) for status in JobStatus),
    ],
)
def test_allowed_job_transitions(old: JobStatus, new: JobStatus) -> None:
    check_job_transition(old, new)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (J.COMPLETED, J.ACTIVE),
        (J.COMPLETED, J.FAILED),
        (J.FAILED, J.ACTIVE),
        (J.CANCELED, J.ACTIVE),
        (J.CANCELED, J.COMPLETED),
        (J.CANCEL_REQUESTED, J.ACTIVE),
        (J.CANCEL_REQUESTED, J.PAUSED),
        (J.CANCEL_REQUESTED, J.QUEUED),
        (J.PAUSED, J.COMPLETED),
        (J.PAUSED, J.FAILED),
        (J.REQUEUEING, J.ACTIVE),
        (J.REQUEUEING, J.COMPLETED),
        (J.QUEUED, J.REQUEUEING),
        (J.ACTIVE, J.REQUEUEING),
    ],
)
def test_forbidden_job_transitions(old: JobStatus, new: JobStatus) -> None:
    with pytest.raises(InvalidTransition) as caught:
        check_job_transition(old, new)
    assert str(caught.value) == f"A job cannot go from {old} to {new}."


@pytest.mark.parametrize(
    ("current", "counts", "expected"),
    [
        # No tasks, or all completed: done.
        (J.QUEUED, {}, J.COMPLETED),
        (J.ACTIVE, {}, J.COMPLETED),
        (J.QUEUED, {T.COMPLETED: 0}, J.COMPLETED),
        (J.ACTIVE, {T.COMPLETED: 5}, J.COMPLETED),
        (J.QUEUED, {T.COMPLETED: 5}, J.COMPLETED),
        (J.PAUSE_REQUESTED, {T.COMPLETED: 5}, J.COMPLETED),
        (J.CANCEL_REQUESTED, {T.COMPLETED: 5}, J.COMPLETED),
        (J.ACTIVE, {T.COMPLETED: 5, T.QUEUED: 0}, J.COMPLETED),
        # Any failed task fails the job, unless a cancel was requested.
        (J.ACTIVE, {T.FAILED: 1, T.COMPLETED: 4}, J.FAILED),
        (J.ACTIVE, {T.FAILED: 1, T.ACTIVE: 2}, J.FAILED),
        (J.QUEUED, {T.FAILED: 1, T.QUEUED: 4}, J.FAILED),
        (J.PAUSE_REQUESTED, {T.FAILED: 1, T.ACTIVE: 1}, J.FAILED),
        (J.CANCEL_REQUESTED, {T.FAILED: 1, T.ACTIVE: 1}, J.CANCEL_REQUESTED),
        (J.CANCEL_REQUESTED, {T.FAILED: 1, T.CANCELED: 3}, J.CANCELED),
        # Cancel requested: canceled once nothing is active or leased.
        (J.CANCEL_REQUESTED, {T.CANCELED: 3, T.COMPLETED: 2}, J.CANCELED),
        (J.CANCEL_REQUESTED, {T.QUEUED: 3}, J.CANCELED),
        (J.CANCEL_REQUESTED, {T.ACTIVE: 1, T.CANCELED: 3}, J.CANCEL_REQUESTED),
        (J.CANCEL_REQUESTED, {T.LEASED: 1, T.CANCELED: 3}, J.CANCEL_REQUESTED),
        # Pause requested: paused once nothing is active or leased.
        (J.PAUSE_REQUESTED, {T.PAUSED: 3, T.COMPLETED: 2}, J.PAUSED),
        (J.PAUSE_REQUESTED, {T.QUEUED: 3}, J.PAUSED),
        (J.PAUSE_REQUESTED, {T.ACTIVE: 1, T.PAUSED: 3}, J.PAUSE_REQUESTED),
        (J.PAUSE_REQUESTED, {T.LEASED: 1, T.PAUSED: 3}, J.PAUSE_REQUESTED),
        (J.PAUSE_REQUESTED, {T.SOFT_FAILED: 1, T.PAUSED: 3}, J.PAUSED),
        # Queued becomes active once a Worker has picked up any task.
        (J.QUEUED, {T.QUEUED: 4, T.LEASED: 1}, J.ACTIVE),
        (J.QUEUED, {T.QUEUED: 4, T.ACTIVE: 1}, J.ACTIVE),
        (J.QUEUED, {T.QUEUED: 4, T.COMPLETED: 1}, J.ACTIVE),
        (J.QUEUED, {T.QUEUED: 4, T.SOFT_FAILED: 1}, J.ACTIVE),
        (J.QUEUED, {T.QUEUED: 5}, J.QUEUED),
        (J.QUEUED, {T.QUEUED: 4, T.PAUSED: 1}, J.QUEUED),
        # Otherwise unchanged.
        (J.ACTIVE, {T.QUEUED: 4, T.ACTIVE: 1}, J.ACTIVE),
        (J.ACTIVE, {T.QUEUED: 5}, J.ACTIVE),
        (J.ACTIVE, {T.SOFT_FAILED: 2, T.COMPLETED: 3}, J.ACTIVE),
        # Settled jobs only move by explicit action.
        (J.PAUSED, {T.PAUSED: 5}, J.PAUSED),
        (J.PAUSED, {T.COMPLETED: 5}, J.PAUSED),
        (J.PAUSED, {T.FAILED: 1, T.PAUSED: 4}, J.PAUSED),
        (J.CANCELED, {}, J.CANCELED),
        (J.CANCELED, {T.COMPLETED: 5}, J.CANCELED),
        (J.FAILED, {T.FAILED: 1, T.COMPLETED: 4}, J.FAILED),
        (J.FAILED, {T.COMPLETED: 5}, J.FAILED),
        (J.COMPLETED, {T.COMPLETED: 5}, J.COMPLETED),
        (J.COMPLETED, {T.QUEUED: 1, T.COMPLETED: 4}, J.COMPLETED),
        (J.REQUEUEING, {T.QUEUED: 5}, J.REQUEUEING),
    ],
)
def test_job_status_from_tasks(
    current: JobStatus, counts: dict[TaskStatus, int], expected: JobStatus
) -> None:
    assert job_status_from_tasks(current, counts) == expected


def _count_samples() -> list[dict[TaskStatus, int]]:
    """Every combination of zero or one task per status: 256 small job snapshots."""
    return [
        {status: 1 for status, on in zip(TaskStatus, flags, strict=True) if on}
        for flags in itertools.product((False, True), repeat=len(TaskStatus))
    ]


@pytest.mark.parametrize("current", list(JobStatus))
def test_job_status_from_tasks_only_makes_allowed_transitions(current: JobStatus) -> None:
    for counts in _count_samples():
        check_job_transition(current, job_status_from_tasks(current, counts))


@pytest.mark.parametrize(
    ("counts", "limit", "expected"),
    [
        ({TaskStatus.FAILED: 1, TaskStatus.QUEUED: 3}, 0, JobStatus.FAILED),
        ({TaskStatus.FAILED: 1, TaskStatus.QUEUED: 3}, 1, JobStatus.ACTIVE),
        ({TaskStatus.FAILED: 2, TaskStatus.ACTIVE: 2}, 1, JobStatus.FAILED),
        # Within the limit, but nothing else can run any more: the job has failed.
        ({TaskStatus.FAILED: 1, TaskStatus.COMPLETED: 3}, 1, JobStatus.FAILED),
        (
            {TaskStatus.FAILED: 1, TaskStatus.SOFT_FAILED: 1, TaskStatus.COMPLETED: 2},
            1,
            JobStatus.ACTIVE,
        ),
    ],
)
def test_max_failed_tasks_is_how_many_failures_a_job_survives(
    counts: dict[TaskStatus, int], limit: int, expected: JobStatus
) -> None:
    assert job_status_from_tasks(JobStatus.ACTIVE, counts, max_failed_tasks=limit) == expected
