"""Time on the Dashboard: how long a job has run, how long it still needs, who rendered when.

Everything comes from the runs of the job's tasks as the Server gives them
(`GET /api/v1/jobs/{id}/runs`, and with each page of tasks; see flamenco.core.runs): which
Worker rendered which task, from when until when.

- A job *started* with its first run. Its *time so far* runs from then until now, or until
  its last change once it is completed, failed, canceled or paused.
- Its *time left* assumes the rest renders at the average rate so far:
  `eta = elapsed * (1 - progress) / progress`, for a queued or active job with
  0 < progress < 1 (progress weighs each task by its frames and counts partial progress).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from html import escape
from typing import Any

from flamenco.core.frames import clip
from flamenco.core.runs import Run, parse_time

STOPPED_JOB = {"completed", "failed", "canceled", "paused"}
ESTIMATED_JOB = {"queued", "active"}
RUN_COLOURS = {
    "running": "#3b82f6",
    "completed": "#22c55e",
    "failed": "#ef4444",
    "soft-failed": "#f59e0b",
    "canceled": "#94a3b8",
    "paused": "#a78bfa",
    "queued": "#64748b",
}


def runs_of(answer: Iterable[Mapping[str, Any]]) -> list[Run]:
    """Runs from the Server's JSON (`wire.TaskRun`)."""
    return [
        Run(
            task_id=r["task_id"],
            worker=r["worker"],
            start=parse_time(r["start"]),
            end=None if r["end"] is None else parse_time(r["end"]),
            outcome=r["outcome"],
        )
        for r in answer
    ]


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
            f'text-anchor="end">{escape(clip(worker, 22))}</text>'
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
