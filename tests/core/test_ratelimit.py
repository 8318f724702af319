"""Token buckets per key: which attempts go ahead, and how long the others must wait."""

from __future__ import annotations

import pytest

from flamenco.core.ratelimit import KeyedRateLimit, retry_after_header

A, B, U = ("address", "a"), ("address", "b"), ("user", "alice")


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


# Each step: (seconds later, keys, give back afterwards?, expected wait: 0 = goes ahead).
# Burst 3, one token back every 10 s.
CASES = {
    "three at once, then wait for the next token": [
        (0, [A], False, 0),
        (0, [A], False, 0),
        (0, [A], False, 0),
        (0, [A], False, 10),
        (4, [A], False, 6),
        (6, [A], False, 0),
        (0, [A], False, 10),
    ],
    "attempts given back never use the bucket up": [(0, [A], True, 0)] * 10,
    "another address has its own bucket": [
        (0, [A], False, 0),
        (0, [A], False, 0),
        (0, [A], False, 0),
        (0, [B], False, 0),
        (0, [A], False, 10),
    ],
    "the user's bucket stops a second address": [
        (0, [A, U], False, 0),
        (0, [A, U], False, 0),
        (0, [A, U], False, 0),
        (0, [B, U], False, 10),
        (0, [B], False, 0),  # that refusal took nothing from B
        (0, [B], False, 0),
        (0, [B], False, 0),
    ],
    "the wait is the longest of the keys": [
        (0, [A, U], False, 0),
        (0, [A, U], False, 0),
        (0, [A, U], False, 0),
        (5, [A], False, 5),
        (4, [A], False, 1),
        (1, [A], False, 0),  # A spent its new token; U has one too
        (0, [A, U], False, 10),
    ],
    "a full bucket does not fill further": [
        (0, [A], False, 0),
        (1000, [A], False, 0),
        (0, [A], False, 0),
        (0, [A], False, 0),
        (0, [A], False, 10),
    ],
}


@pytest.mark.parametrize("steps", CASES.values(), ids=CASES.keys())
def test_attempts_go_ahead_while_every_key_has_a_token(
    steps: list[tuple[float, list[tuple[str, str]], bool, float]],
) -> None:
    clock = Clock()
    limit = KeyedRateLimit(burst=3, refill_s=10.0, clock=clock)
    for number, (later, keys, give_back, expected) in enumerate(steps):
        clock.now += later
        wait = limit.take(keys)
        assert wait == pytest.approx(expected), f"step {number}"
        if give_back and wait == 0:
            limit.give_back(keys)


def test_full_buckets_are_forgotten_and_the_keys_are_bounded() -> None:
    clock = Clock()
    limit = KeyedRateLimit(burst=2, refill_s=1.0, clock=clock, max_keys=10)
    for n in range(100):  # made-up user names, each tried once
        assert limit.take([("user", str(n))]) == 0
    assert len(limit.buckets) <= 10
    limit.give_back([("user", "99")])
    assert ("user", "99") not in limit.buckets  # full again: nothing to remember


@pytest.mark.parametrize(
    ("seconds", "header"), [(0.01, "1"), (1.0, "1"), (1.2, "2"), (9.99, "10"), (0, "1")]
)
def test_retry_after_is_whole_seconds_rounded_up(seconds: float, header: str) -> None:
    assert retry_after_header(seconds) == header


@pytest.mark.parametrize(("burst", "refill_s"), [(0, 1.0), (3, 0.0), (3, -1.0)])
def test_a_limit_needs_a_burst_and_a_refill(burst: int, refill_s: float) -> None:
    with pytest.raises(ValueError):
        KeyedRateLimit(burst, refill_s, clock=Clock())
