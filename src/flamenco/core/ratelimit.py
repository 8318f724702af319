"""Token buckets per key (a client address, a user name), with the clock passed in.

Each key may spend `burst` tokens at once, and gets one back every `refill_s` seconds. An
attempt names several keys and goes ahead only when every one of them has a token; then it
takes one from each. The caller gives them back when the attempt turns out harmless (a
login that succeeded), so only failures use a bucket up. Taking before trying, rather than
counting afterwards, keeps a burst of parallel attempts within the limit too.

Buckets that are full again are forgotten, and at most `max_keys` are kept: made-up user
names cannot fill the memory.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass


@dataclass
class _Bucket:
    tokens: float
    at: float  # when `tokens` was right


class KeyedRateLimit:
    def __init__(
        self,
        burst: int,
        refill_s: float,
        clock: Callable[[], float],
        max_keys: int = 100_000,
    ) -> None:
        if burst < 1 or refill_s <= 0:
            raise ValueError("A rate limit needs a burst of at least 1 and a positive refill.")
        self.burst = burst
        self.refill_s = refill_s
        self.clock = clock
        self.max_keys = max_keys
        self.buckets: dict[Hashable, _Bucket] = {}

    def _tokens(self, key: Hashable, now: float) -> float:
        bucket = self.buckets.get(key)
        if bucket is None:
            return float(self.burst)
        return min(float(self.burst), bucket.tokens + (now - bucket.at) / self.refill_s)

    def take(self, keys: Iterable[Hashable]) -> float:
        """0 when the attempt may go ahead (a token was taken from each key's bucket), else
        the seconds until every one of them has a token again (nothing was taken)."""
        now = self.clock()
        keys = list(dict.fromkeys(keys))
        tokens = {key: self._tokens(key, now) for key in keys}
        short = max((1.0 - t for t in tokens.values()), default=0.0)
        if short > 0:
            return short * self.refill_s
        for key, available in tokens.items():
            self.buckets.pop(key, None)  # re-inserted: the dict stays in order of change
            self.buckets[key] = _Bucket(available - 1.0, now)
        self._forget_full(now)
        return 0.0

    def give_back(self, keys: Iterable[Hashable]) -> None:
        """Return the token an attempt took from each key (the attempt did no harm)."""
        now = self.clock()
        for key in dict.fromkeys(keys):
            available = self._tokens(key, now) + 1.0
            if available >= self.burst:
                self.buckets.pop(key, None)
            else:
                self.buckets[key] = _Bucket(available, now)

    def _forget_full(self, now: float) -> None:
        if len(self.buckets) <= self.max_keys:
            return
        for key in [k for k in self.buckets if self._tokens(k, now) >= self.burst]:
            del self.buckets[key]
        while len(self.buckets) > self.max_keys:  # the oldest changes go first
            del self.buckets[next(iter(self.buckets))]


def retry_after_header(seconds: float) -> str:
    """A Retry-After value: whole seconds, rounded up, at least 1."""
    return str(max(1, math.ceil(seconds)))
