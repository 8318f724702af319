"""How many tasks a Manager asks its Server for (manager/server_side.py `want`): one per idle
Worker, plus tasks held ahead while any Worker works. Table-driven on the ServerSide part of
the service alone: no Server, no loop."""

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
    count = round(finished_per_s * RATE_WINDOW_S)  # spread over the newer half of the window
    side._finished = deque(now - RATE_WINDOW_S * n / max(count, 1) / 2 for n in range(count))
    return side


@pytest.mark.parametrize(
    ("queued", "idle", "working", "rate", "want"),
    [
        # nobody works: nothing ahead, one task per idle Worker
        (0, 0, 0, 0.0, 0),
        (0, 3, 0, 0.0, 3),
        (5, 3, 0, 0.0, 0),  # what is queued already counts
        # long tasks: the prefetch (2) is held ahead
        (2, 0, 10, 0.2, 0),
        (0, 0, 10, 0.2, 2),
        (0, 1, 10, 0.2, 3),
        # short tasks: a second of the rate (100 a second) ahead, at most 2 per working Worker
        (0, 0, 10, 100.0, 20),
        (15, 0, 10, 100.0, 5),
        (0, 0, 200, 100.0, 100),
        # a busy site: 4,000 a second by 500 Workers holds 1,000 ahead
        (600, 0, 500, 4000.0, 400),
        (600, 50, 500, 4000.0, 450),
    ],
)
def test_want(queued: int, idle: int, working: int, rate: float, want: int) -> None:
    assert site(queued, idle, working, rate).want() == want
