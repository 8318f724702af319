"""How many tasks a Manager asks its Server for, and when a refill may not wait for the
link's gather pause (manager/server_side.py: want, ahead, refill_due). Table-driven on the
ServerSide part of the service alone: no Server, no loop."""

from __future__ import annotations

import time
from collections import deque

import pytest

from flamenco.config import ManagerSettings
from flamenco.manager.queue import TaskQueue
from flamenco.manager.server_side import RATE_WINDOW_S, ServerSide
from heldkit import held


def site(queued: int, idle: int, working: int, finished_per_s: float) -> ServerSide:
    side = ServerSide()
    side.settings = ManagerSettings(server="http://127.0.0.1:9")  # prefetch 2
    side.queue = TaskQueue()
    for n in range(queued):
        side.queue.add(held(f"t{n}", seq=n))
    side._idle = {f"idle-{n}": 0.0 for n in range(idle)}
    side._working = {f"w{n}" for n in range(working)}
    now = time.monotonic()
    count = round(finished_per_s * RATE_WINDOW_S)
    side._finished = deque(now - RATE_WINDOW_S * n / max(count, 1) / 2 for n in range(count))
    return side


@pytest.mark.parametrize(
    ("queued", "idle", "working", "rate", "ahead", "want", "due"),
    [
        # nobody works: nothing ahead; an idle Worker wants one and makes the refill due
        (0, 0, 0, 0.0, 0, 0, False),
        (0, 1, 0, 0.0, 0, 1, True),
        # long tasks: the prefetch (2) is held ahead; two queued are enough
        (2, 0, 10, 0.2, 2, 0, False),
        (1, 0, 10, 0.2, 2, 1, False),
        (0, 0, 10, 0.2, 2, 2, True),
        # short tasks: a second of the rate (100), at most 2 per working Worker (20)
        (20, 0, 10, 100.0, 20, 0, False),
        (11, 0, 10, 100.0, 20, 9, False),
        (9, 0, 10, 100.0, 20, 11, True),  # less than half of what is held ahead is left
        # a busy site: 4,000/s by 500 Workers; 1,000 ahead, due once fewer than 500 remain
        (600, 0, 500, 4000.0, 1000, 400, False),
        (499, 0, 500, 4000.0, 1000, 501, True),
        (900, 3, 500, 4000.0, 1000, 103, True),  # a Worker waits: do not delay
    ],
)
def test_want_ahead_and_refill_due(
    queued: int, idle: int, working: int, rate: float, ahead: int, want: int, due: bool
) -> None:
    side = site(queued, idle, working, rate)
    assert (side.ahead(), side.want(), side.refill_due()) == (ahead, want, due)
