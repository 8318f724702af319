"""TaskQueue.pick asks only the jobs that may hold an earlier fit, and still picks what a look
at every job's head would: highest priority, the warm job, else the fit leased first."""

from __future__ import annotations

import random

import pytest

from flamenco.manager.queue import TaskQueue
from flamenco.manager.store import HeldTask
from heldkit import held


def every_head(queued: list[HeldTask], fits: set[str], warm: str | None) -> HeldTask | None:
    """The pick by its definition, from every queued task."""
    for priority in sorted({h.priority for h in queued}, reverse=True):
        same = [h for h in queued if h.priority == priority and h.task_id in fits]
        warm_fits = [h for h in same if h.job_id == warm]
        if warm_fits:
            return min(warm_fits, key=lambda h: h.seq)
        if same:
            return min(same, key=lambda h: h.seq)
    return None


@pytest.mark.parametrize("seed", range(40))
def test_pick_matches_a_look_at_every_head(seed: int) -> None:
    rng = random.Random(seed)
    queue, queued = TaskQueue(), []
    seqs = rng.sample(range(1, 1000), 60)  # requeued tasks come back out of lease order
    for n, seq in enumerate(seqs):
        task = held(f"t{n}", job_id=f"j{rng.randrange(6)}", priority=rng.choice((50, 60)), seq=seq)
        queue.add(task)
        queued.append(task)
    for _ in range(20):
        fits = {h.task_id for h in queued if rng.random() < 0.3}
        warm = rng.choice([None, "j0", "j3", "gone"])
        picked = queue.pick(lambda h, fits=fits: h.task_id in fits, warm)
        assert picked is every_head(queued, fits, warm)
        if picked is not None:
            queue.remove(picked)
            queued.remove(picked)
