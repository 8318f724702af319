"""Table-driven tests for flamenco.core.runs: runs of tasks from their history."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from flamenco.core.runs import (
    end_stopped_runs,
    last_failed_task_ids,
    last_run_seconds,
    mark_retried_failures,
    open_task_ids,
    parse_time,
    task_runs,
)

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def at(seconds: float) -> str:
    return (T0 + timedelta(seconds=seconds)).isoformat()


def event(task: str, status: str, s: float, worker: str | None = "w1") -> tuple:
    return (task, status, worker, at(s))


def summary(runs: list) -> list[tuple]:
    return [(r.task_id, r.worker, r.outcome, r.end and (r.end - T0).seconds) for r in runs]


def test_runs_follow_the_applied_reports_and_stopped_tasks() -> None:
    history = [
        event("a", "active", 0),
        event("b", "active", 2, "w2"),
        event("a", "active", 3),  # progress report from the same run
        event("b", "soft-failed", 5, "w2"),
        event("c", "active", 6, "w2"),
        event("a", "completed", 10),
        event("b", "active", 11),
    ]
    tasks = {"c": {"status": "canceled", "updated": at(8)}, "b": {"status": "active"}}
    runs = task_runs(history, tasks)
    assert summary(runs) == [
        ("a", "w1", "completed", 10),
        ("b", "w2", "soft-failed", 5),
        ("c", "w2", "canceled", 8),
        ("b", "w1", "running", None),
    ]
    assert last_run_seconds(runs, T0 + timedelta(seconds=20)) == {"a": 10, "b": 9, "c": 2}


@pytest.mark.parametrize(
    ("history", "expected"),
    [
        ([], []),
        ([event("a", "completed", 1)], []),  # no run without an `active` report
        (
            [event("a", "active", 0), event("a", "active", 4, "w2")],
            [
                ("a", "w1", "queued", 4),  # taken over by another Worker
                ("a", "w2", "running", None),
            ],
        ),
        ([event("a", "active", 0), event("a", "paused", 3)], [("a", "w1", "paused", 3)]),
        ([event("a", "active", 0), event("a", "queued", 3)], [("a", "w1", "queued", 3)]),
        ([event("a", "active", 0), event("a", "leased", 3)], [("a", "w1", "running", None)]),
        ([event("a", "active", 0, None)], [("a", "?", "running", None)]),
    ],
)
def test_what_starts_and_ends_a_run(history: list[tuple], expected: list[tuple]) -> None:
    assert summary(task_runs(history)) == expected


@pytest.mark.parametrize(
    ("task", "expected"),
    [
        ({"status": "active", "updated": at(9)}, ("running", None)),
        ({"status": "leased", "updated": at(9)}, ("running", None)),
        ({"status": "canceled", "updated": at(9)}, ("canceled", 9)),
        ({"status": "queued", "updated": at(9)}, ("queued", 9)),
        ({"status": "paused", "updated": at(-5)}, ("paused", 0)),  # never before its start
    ],
)
def test_an_open_run_of_a_stopped_task_ends_at_its_last_change(task: dict, expected: tuple) -> None:
    runs = task_runs([event("a", "active", 0)])
    assert open_task_ids(runs) == {"a"}
    end_stopped_runs(runs, {"a": task})
    (run,) = runs
    assert (run.outcome, run.end and (run.end - T0).seconds) == expected


def test_times_without_an_offset_are_utc() -> None:
    assert parse_time("2026-01-01T12:00:00") == T0
    assert parse_time(datetime(2026, 1, 1, 12)) == T0
    assert parse_time(at(0)) == T0


FAILED_TWICE = [
    event("a", "active", 0),
    event("a", "failed", 2),
    event("a", "active", 3, "w2"),
    event("a", "failed", 5, "w2"),
]


@pytest.mark.parametrize(
    ("history", "task_status", "expected"),
    [
        # retried, then failed for good: only the last failure was final
        (FAILED_TWICE, "failed", ["soft-failed", "failed"]),
        # the last failure is waiting for its retry
        (FAILED_TWICE, "soft-failed", ["soft-failed", "soft-failed"]),
        (FAILED_TWICE, "queued", ["soft-failed", "soft-failed"]),
        # retried and now rendering again
        ([*FAILED_TWICE, event("a", "active", 6)], "active", ["soft-failed"] * 2 + ["running"]),
        # other outcomes are what they were
        ([event("a", "active", 0), event("a", "completed", 1)], "completed", ["completed"]),
        # nothing known of the task: the last failure stays as reported
        (FAILED_TWICE, None, ["soft-failed", "failed"]),
    ],
)
def test_a_failure_that_was_retried_is_soft_failed(
    history: list[tuple], task_status: str | None, expected: list[str]
) -> None:
    runs = task_runs(history)
    tasks = {} if task_status is None else {"a": {"status": task_status, "updated": at(9)}}
    mark_retried_failures(runs, tasks)
    assert [run.outcome for run in runs] == expected


def test_the_tasks_whose_last_run_failed_are_the_ones_to_look_up() -> None:
    assert last_failed_task_ids(task_runs(FAILED_TWICE)) == {"a"}
    assert last_failed_task_ids(task_runs([*FAILED_TWICE, event("a", "active", 6)])) == set()
