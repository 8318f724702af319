"""Runs of tasks: who rendered which task, from when until when, built from its history.

The history is the status reports about a task that the Server applied (`AppliedUpdate` with
outcome `applied`), as `(task id, status, worker, when)` in the order they arrived; reports
it ignored (late, or about a task finished elsewhere) are no part of it.

- A *run* of a task starts with an applied `active` report and ends with the next applied
  report of another status for that task (completed, failed, soft-failed, canceled, paused,
  queued). Another `active` report from the same Worker is progress of the same run; one
  from another Worker ends the run (as `queued`) and starts a new one.
- A run still open whose task is no longer active (a job action stopped it without a
  report) ends at the task's last change, with the task's status as its outcome.
- A run that ended `failed` but was retried (a later run of the task, or the task is not
  failed now) was soft-failed: Workers report failures, the Server decides which are final.
- A job *started* with its first run.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

# (task id, status, worker, when): one applied status report.
Report = tuple[str, str, str | None, str | datetime]

ENDS_A_RUN = frozenset({"completed", "failed", "soft-failed", "canceled", "paused", "queued"})
STILL_RUNNING = frozenset({"active", "leased"})


def parse_time(value: str | datetime) -> datetime:
    """An aware datetime; a naive one (or ISO text without an offset) is taken as UTC."""
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(value)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@dataclass
class Run:
    task_id: str
    worker: str
    start: datetime
    end: datetime | None = None  # None: still rendering
    outcome: str = "running"

    def seconds(self, now: datetime) -> float:
        return max(0.0, ((self.end or now) - self.start).total_seconds())


def task_runs(
    history: Iterable[Report], tasks: Mapping[str, Mapping[str, Any]] | None = None
) -> list[Run]:
    """Every run of every task, in the order they started; `tasks` (id -> status, updated)
    ends the open runs of tasks that stopped, see `end_stopped_runs`."""
    runs: list[Run] = []
    open_runs: dict[str, Run] = {}
    for task_id, status, worker, when in history:
        current = open_runs.get(task_id)
        if status == "active":
            if current is not None and current.worker == (worker or "?"):
                continue
            at = parse_time(when)
            if current is not None:
                current.end, current.outcome = at, "queued"
            open_runs[task_id] = run = Run(task_id, worker or "?", at)
            runs.append(run)
        elif status in ENDS_A_RUN and current is not None:
            current.end, current.outcome = parse_time(when), status
            del open_runs[task_id]
    if tasks is not None:
        end_stopped_runs(runs, tasks)
    return runs


def open_task_ids(runs: Iterable[Run]) -> set[str]:
    """The tasks whose latest run has no end yet."""
    return {run.task_id for run in runs if run.end is None}


def end_stopped_runs(runs: Iterable[Run], tasks: Mapping[str, Mapping[str, Any]]) -> None:
    """End each open run whose task (id -> status, updated) is no longer active or leased."""
    for run in runs:
        task = tasks.get(run.task_id)
        if run.end is None and task is not None and task["status"] not in STILL_RUNNING:
            run.end = max(run.start, parse_time(task["updated"]))
            run.outcome = str(task["status"])


def _last_runs(runs: Iterable[Run]) -> dict[str, Run]:
    """Each task's latest run (runs come in the order they started)."""
    return {run.task_id: run for run in runs}


def last_failed_task_ids(runs: Iterable[Run]) -> set[str]:
    """The tasks whose latest run ended `failed` (see `mark_retried_failures`)."""
    return {task_id for task_id, run in _last_runs(runs).items() if run.outcome == "failed"}


def mark_retried_failures(runs: Iterable[Run], tasks: Mapping[str, Mapping[str, Any]]) -> None:
    """A Worker reports a failure as `failed`; the Server makes the task soft-failed and runs
    it again until it has failed too often. So a failed run that is not its task's last, or
    whose task (id -> status) is not failed now, was soft-failed."""
    runs = list(runs)
    last = _last_runs(runs)
    for run in runs:
        if run.outcome != "failed":
            continue
        task = tasks.get(run.task_id)
        if run is not last[run.task_id] or (task is not None and task["status"] != "failed"):
            run.outcome = "soft-failed"


def last_run_seconds(runs: Iterable[Run], now: datetime) -> dict[str, float]:
    """How long each task's latest run took, or has taken so far."""
    return {task_id: run.seconds(now) for task_id, run in _last_runs(runs).items()}
