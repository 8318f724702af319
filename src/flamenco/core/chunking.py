"""Chunks sized by time (`--chunk auto`): how many frames the queued tasks of a job should hold
so that each renders in about the job's target seconds.

Before anything has rendered nothing is known about a frame's cost, so a job starts with one
frame per task (like `--chunk 1`): no Worker begins with a task longer than one frame. Each
time tasks complete, the Server re-plans the job's trailing queued tasks from the frames done:

- *Samples*: each completed task gives one sample, its run's seconds divided by its frames,
  placed at the task's middle frame. Only the most recent `RECENT_SAMPLES` count: a Worker
  that warmed up, or a scene whose cost changed, is followed rather than averaged away.
- *Trend*: cost often rises (or falls) across a frame range (more objects enter the shot),
  so the per-frame cost is a straight line fitted to the samples by least squares, weighted
  by each sample's frames. Frames further on are predicted from the line, clamped to
  [half the cheapest sample, twice the dearest] so that a noisy slope fitted from a few
  early frames never predicts absurd costs far away; as tasks near those frames complete,
  the clamp widens with the samples.
- *Chunks*: the queued frames, in order, are cut greedily: a task takes the next frame while
  its predicted seconds stay within the target (a frame dearer than the target alone still
  makes a task of one frame).
- *The end*: near the end of the job a task also stays within the predicted work left from
  it on, divided by the Workers seen rendering the job (in the recent samples), so the last
  tasks shrink and the Workers finish together rather than one rendering a full-size last
  task while the others idle.

A task's run includes what a task costs besides its frames (the lease, loading the file in
a cold Blender, sending the frames): that is counted in the samples, so the planned tasks
come out a little short of the target rather than over it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

DEFAULT_TASK_SECONDS = 60.0
RECENT_SAMPLES = 16
MAX_AUTO_CHUNK = 10_000  # frames in one planned task, whatever the estimate says
_CLAMP_LOW, _CLAMP_HIGH = 0.5, 2.0


@dataclass(frozen=True)
class DoneTask:
    """A completed task: its frames (in order) and how long its run took, in seconds."""

    frames: tuple[int, ...]
    seconds: float
    worker: str = ""


@dataclass(frozen=True)
class FrameCost:
    """Predicted seconds per frame: `intercept + slope * frame`, clamped to [low, high]."""

    intercept: float
    slope: float
    low: float
    high: float

    def seconds(self, frame: int) -> float:
        return min(self.high, max(self.low, self.intercept + self.slope * frame))


def estimate_frame_cost(done: Sequence[DoneTask]) -> FrameCost | None:
    """The per-frame cost line fitted to the most recent completed tasks (oldest first in
    `done`), or None while none has frames and a positive time."""
    samples = [
        (sum(task.frames) / len(task.frames), task.seconds / len(task.frames), len(task.frames))
        for task in done[-RECENT_SAMPLES:]
        if task.frames and task.seconds > 0
    ]
    if not samples:
        return None
    weight = sum(w for _, _, w in samples)
    mean_x = sum(x * w for x, _, w in samples) / weight
    mean_y = sum(y * w for _, y, w in samples) / weight
    spread = sum(w * (x - mean_x) ** 2 for x, _, w in samples)
    slope = sum(w * (x - mean_x) * (y - mean_y) for x, y, w in samples) / spread if spread else 0.0
    costs = [y for _, y, _ in samples]
    return FrameCost(
        mean_y - slope * mean_x, slope, _CLAMP_LOW * min(costs), _CLAMP_HIGH * max(costs)
    )


def plan_chunks(
    frames: Sequence[int], cost: FrameCost, task_seconds: float, workers: int = 1
) -> list[tuple[int, ...]]:
    """Cut `frames` (in order) into tasks of about `task_seconds` each by the cost line; near
    the end, of at most the work left divided by `workers`."""
    chunks: list[tuple[int, ...]] = []
    current: list[int] = []
    total = 0.0
    left = sum(cost.seconds(frame) for frame in frames)
    limit = min(task_seconds, left / max(1, workers))
    for frame in frames:
        seconds = cost.seconds(frame)
        if current and (total + seconds > limit or len(current) >= MAX_AUTO_CHUNK):
            chunks.append(tuple(current))
            left -= total
            current, total = [], 0.0
            limit = min(task_seconds, left / max(1, workers))
        current.append(frame)
        total += seconds
    if current:
        chunks.append(tuple(current))
    return chunks


def rechunk(
    queued: Sequence[Sequence[int]], done: Sequence[DoneTask], task_seconds: float
) -> list[tuple[int, ...]] | None:
    """The new frames of the queued tasks (each a task's frames, in task order), or None when
    they stay as they are: nothing completed yet, or the plan is the one they already have.
    The frames keep their order and each stays in exactly one task."""
    cost = estimate_frame_cost(done)
    if cost is None or not queued:
        return None
    frames = [frame for task in queued for frame in task]
    workers = len({task.worker for task in done[-RECENT_SAMPLES:]})
    plan = plan_chunks(frames, cost, task_seconds, workers)
    if plan == [tuple(task) for task in queued]:
        return None
    return plan
