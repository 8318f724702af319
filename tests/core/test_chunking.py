"""core/chunking.py: the per-frame cost line and the plan of queued tasks, table-driven."""

from __future__ import annotations

import pytest

from flamenco.core.chunking import (
    RECENT_SAMPLES,
    DoneTask,
    FrameCost,
    estimate_frame_cost,
    plan_chunks,
    rechunk,
)


def _done(*tasks: tuple[tuple[int, ...], float]) -> list[DoneTask]:
    return [DoneTask(frames, seconds) for frames, seconds in tasks]


@pytest.mark.parametrize(
    ("done", "frame", "expected"),
    [
        # one sample: a constant
        (_done(((1,), 2.0)), 100, 2.0),
        # a task of four frames in 8 s: 2 s a frame
        (_done(((1, 2, 3, 4), 8.0)), 50, 2.0),
        # same middle frame twice: no spread, the weighted mean (1*1 + 3*3)/4
        (_done(((5,), 1.0), ((4, 5, 6), 9.0)), 5, 2.5),
        # a rising cost: 1 s at frame 1, 2 s at frame 11 -> 1.5 s at frame 6
        (_done(((1,), 1.0), ((11,), 2.0)), 6, 1.5),
        # the line extrapolated, clamped to twice the dearest sample (4 s, not 11 s)
        (_done(((1,), 1.0), ((11,), 2.0)), 101, 4.0),
        # and to half the cheapest below (0.5 s, not a negative cost)
        (_done(((1,), 1.0), ((11,), 2.0)), -100, 0.5),
        # tasks without frames or time give no sample
        (_done(((), 5.0), ((3,), 0.0), ((7,), 3.0)), 1, 3.0),
    ],
)
def test_estimate_frame_cost(done: list[DoneTask], frame: int, expected: float) -> None:
    cost = estimate_frame_cost(done)
    assert cost is not None
    assert cost.seconds(frame) == pytest.approx(expected)


@pytest.mark.parametrize("done", [[], _done(((), 1.0)), _done(((1,), 0.0))])
def test_no_estimate_before_anything_rendered(done: list[DoneTask]) -> None:
    assert estimate_frame_cost(done) is None


def test_only_recent_samples_count() -> None:
    """Old samples (a cold Blender at 10 s a frame) drop out once enough recent ones came."""
    old = _done(*[((i,), 10.0) for i in range(5)])
    recent = _done(*[((100 + i,), 1.0) for i in range(RECENT_SAMPLES)])
    cost = estimate_frame_cost(old + recent)
    assert cost is not None
    assert cost.seconds(200) == pytest.approx(1.0)


FLAT_1S = FrameCost(1.0, 0.0, 0.0, 100.0)
RISING = FrameCost(0.0, 1.0, 0.0, 100.0)  # frame n costs n seconds


@pytest.mark.parametrize(
    ("frames", "cost", "target", "expected"),
    [
        (range(1, 11), FLAT_1S, 5.0, [(1, 2, 3, 4, 5), (6, 7, 8, 9, 10)]),
        (range(1, 11), FLAT_1S, 3.0, [(1, 2, 3), (4, 5, 6), (7, 8, 9), (10,)]),
        (range(1, 4), FLAT_1S, 60.0, [(1, 2, 3)]),
        # a frame dearer than the target still gets a task of its own
        (range(1, 4), FLAT_1S, 0.5, [(1,), (2,), (3,)]),
        # rising cost: chunks shrink along the range (1+2+3+4=10, 5, 6, 7)
        (range(1, 8), RISING, 10.0, [(1, 2, 3, 4), (5,), (6,), (7,)]),
        # frames with gaps keep their order
        ([1, 5, 9, 20], FLAT_1S, 2.0, [(1, 5), (9, 20)]),
        ([], FLAT_1S, 2.0, []),
    ],
)
def test_plan_chunks(
    frames: list[int], cost: FrameCost, target: float, expected: list[tuple[int, ...]]
) -> None:
    assert plan_chunks(list(frames), cost, target) == expected


@pytest.mark.parametrize(
    ("frames", "target", "workers", "expected"),
    [
        # 2 Workers, 12 s left, 5 s tasks: 5, then 7/2 -> 3, 4/2 -> 2, 1, 1
        (range(1, 13), 5.0, 2, [5, 3, 2, 1, 1]),
        # one Worker: no tail to balance
        (range(1, 13), 5.0, 1, [5, 5, 2]),
        # far from the end the target rules: 20 s left, 3 Workers
        (range(1, 21), 5.0, 3, [5, 5, 3, 2, 1, 1, 1, 1, 1]),
    ],
)
def test_the_last_tasks_shrink_so_the_workers_finish_together(
    frames: range, target: float, workers: int, expected: list[int]
) -> None:
    plan = plan_chunks(list(frames), FLAT_1S, target, workers)
    assert [len(chunk) for chunk in plan] == expected
    assert [f for chunk in plan for f in chunk] == list(frames)


@pytest.mark.parametrize(
    ("queued", "done", "target", "expected"),
    [
        # nothing rendered yet: the plan stays
        ([[3], [4], [5]], [], 10.0, None),
        # nothing queued
        ([], _done(((1,), 1.0)), 10.0, None),
        # merge: 1 s frames, 3 s target
        ([[3], [4], [5], [6]], _done(((1,), 1.0), ((2,), 1.0)), 3.0, [(3, 4, 5), (6,)]),
        # split: 2 s frames, 4 s target
        ([[3, 4, 5, 6, 7]], _done(((1, 2), 4.0)), 4.0, [(3, 4), (5, 6), (7,)]),
        # already the plan: no change
        ([[3, 4], [5, 6]], _done(((1, 2), 4.0)), 4.0, None),
    ],
)
def test_rechunk(
    queued: list[list[int]],
    done: list[DoneTask],
    target: float,
    expected: list[tuple[int, ...]] | None,
) -> None:
    assert rechunk(queued, done, target) == expected


@pytest.mark.parametrize("target", [0.3, 1.0, 7.5, 60.0])
def test_rechunk_keeps_every_frame_once_in_order(target: float) -> None:
    queued = [[f] for f in range(10, 200, 3)]
    done = _done(((1,), 0.2), ((4,), 0.4), ((7, 8), 1.4))
    plan = rechunk(queued, done, target) or queued  # None: already the plan
    assert [f for chunk in plan for f in chunk] == [f for task in queued for f in task]
