"""Time on the Dashboard: how long a job has run, how long it still needs, who rendered when.

Everything comes from the Server's task history (`GET /api/v1/jobs/{id}/history`): each
status report about a task, when the Server received it, and from which Worker.

- A *run* of a task starts with an applied `active` report and ends with the next applied
  report of another status for that task (completed, failed, soft-failed, canceled, paused,
  queued). A run still open whose task is no longer active (a job action stopped it without
  a report) ends at the task's last change.
- A job *started* with its first run. Its *time so far* runs from then until now, or until
  its last change once it is completed, failed, canceled or paused.
- Its *time left* assumes the rest renders at the average rate so far:
  `eta = elapsed * (1 - progress) / progress`, for a queued or active job with
  0 < progress < 1 (progress weighs each task by its frames and counts partial progress).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape
from typing import Any

STOPPED_JOB = {"completed", "failed", "canceled", "paused"}
ESTIMATED_JOB = {"queued", "active"}
ENDS_A_RUN = {"completed", "failed", "soft-failed", "canceled", "paused", "queued"}
RUN_COLOURS = {
    "running": "#3b82f6",
    "completed": "#22c55e",
    "failed": "#ef4444",
    "soft-failed": "#f59e0b",
    "canceled": "#94a3b8",
    "paused": "#a78bfa",
    "queued": "#64748b",
}


def parse_time(value: str | datetime) -> datetime:
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
    history: Iterable[Mapping[str, Any]], tasks: Mapping[str, Mapping[str, Any]] | None = None
) -> list[Run]:
    """Every run of every task, in the order they started."""
    runs: list[Run] = []
    open_runs: dict[str, Run] = {}
    for event in history:
        if event.get("outcome") != "applied":
            continue
        task_id, status, at = event["task_id"], event["status"], parse_time(event["at"])
        current = open_runs.get(task_id)
        if status == "active":
            worker = event.get("worker") or "?"
            if current is not None and current.worker == worker:
                continue
            if current is not None:
                current.end, current.outcome = at, "queued"
            open_runs[task_id] = run = Run(task_id, worker, at)
            runs.append(run)
        elif status in ENDS_A_RUN and current is not None:
            current.end, current.outcome = at, status
            del open_runs[task_id]
    for task_id, run in open_runs.items():
        task = (tasks or {}).get(task_id)
        if task is not None and task.get("status") not in ("active", "leased"):
            run.end = max(run.start, parse_time(task["updated"]))
            run.outcome = str(task.get("status"))
    return runs


def last_run_seconds(runs: Iterable[Run], now: datetime) -> dict[str, float]:
    """How long each task's latest run took, or has taken so far."""
    return {run.task_id: run.seconds(now) for run in runs}


def job_started(history: Iterable[Mapping[str, Any]]) -> datetime | None:
    for event in history:
        if event.get("outcome") == "applied" and event.get("status") == "active":
            return parse_time(event["at"])
    return None


def job_timing(
    job: Mapping[str, Any], started: datetime | None, now: datetime
) -> tuple[float | None, float | None]:
    """(time so far, time left) in seconds; None where unknown. See the module's formula."""
    if started is None:
        return None, None
    end = parse_time(job["updated"]) if job["status"] in STOPPED_JOB else now
    elapsed = max(0.0, (end - started).total_seconds())
    progress = float(job.get("progress") or 0.0)
    if job["status"] not in ESTIMATED_JOB or not 0 < progress < 1:
        return elapsed, None
    return elapsed, elapsed * (1 - progress) / progress


def duration_text(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 9.95:
        return f"{max(seconds, 0.0):.1f}s"
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"


# ---- the timeline picture ----------------------------------------------------------------------

LANE_H, LANE_GAP, LABEL_W, PLOT_W, AXIS_H = 18, 6, 150, 850, 22


def timeline_svg(runs: list[Run], task_names: Mapping[str, str], now: datetime) -> str:
    """One lane per Worker, one bar per run, x = time; each bar says what it was on hover."""
    if not runs:
        return (
            '<svg xmlns="http://www.w3.org/2000/svg" class="timeline" viewBox="0 0 1000 40" '
            'role="img"><text x="500" y="24" text-anchor="middle" class="tl-empty">'
            "No task has started yet.</text></svg>"
        )
    workers = list(dict.fromkeys(run.worker for run in runs))
    lane = {worker: i for i, worker in enumerate(workers)}
    t0 = min(run.start for run in runs)
    t1 = max(run.end or now for run in runs)
    span = max((t1 - t0).total_seconds(), 1.0)
    scale = PLOT_W / span
    height = AXIS_H + len(workers) * (LANE_H + LANE_GAP) + LANE_GAP
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="timeline" '
        f'viewBox="0 0 {LABEL_W + PLOT_W} {height}" role="img" '
        f'aria-label="Timeline of {len(runs)} task runs on {len(workers)} Workers">'
    ]
    for worker, i in lane.items():
        y = AXIS_H + LANE_GAP + i * (LANE_H + LANE_GAP)
        parts.append(
            f'<rect class="tl-lane" x="{LABEL_W}" y="{y}" width="{PLOT_W}" height="{LANE_H}"/>'
            f'<text class="tl-label" x="{LABEL_W - 8}" y="{y + LANE_H - 5}" '
            f'text-anchor="end">{escape(_clip(worker, 22))}</text>'
        )
    for k in range(6):
        x = LABEL_W + PLOT_W * k / 5
        parts.append(
            f'<line class="tl-tick" x1="{x:.1f}" y1="{AXIS_H - 4}" x2="{x:.1f}" y2="{height}"/>'
            f'<text class="tl-axis" x="{x:.1f}" y="{AXIS_H - 8}" '
            f'text-anchor="{"start" if k == 0 else "end" if k == 5 else "middle"}">'
            f"+{duration_text(span * k / 5)}</text>"
        )
    for run in runs:
        y = AXIS_H + LANE_GAP + lane[run.worker] * (LANE_H + LANE_GAP)
        x = LABEL_W + (run.start - t0).total_seconds() * scale
        width = max(run.seconds(now) * scale, 1.5)
        name = task_names.get(run.task_id, run.task_id)
        tip = f"{name} on {run.worker}: {run.outcome}, {duration_text(run.seconds(now))}"
        parts.append(
            f'<rect class="tl-run" x="{x:.1f}" y="{y + 2}" width="{width:.1f}" '
            f'height="{LANE_H - 4}" rx="2" fill="{RUN_COLOURS.get(run.outcome, "#64748b")}" '
            f'data-task="{escape(run.task_id)}"><title>{escape(tip)}</title></rect>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
