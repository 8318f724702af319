"""What the Worker says about its machine: memory, and CPU use since it last said so."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from flamenco import wire


def memory_mb() -> int:
    with contextlib.suppress(OSError, ValueError):
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20
    return 0


def _meminfo() -> dict[str, int]:
    values = {}
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            key, _, rest = line.partition(":")
            values[key] = int(rest.split()[0]) if rest.split() else 0
    return values


def _cpu_times() -> tuple[int, int] | None:
    """(busy, total) jiffies of all CPUs, or None where /proc/stat does not exist."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
        return sum(fields) - idle, sum(fields)
    return None


class StatsSampler:
    """CPU use between two samples, and memory in use now."""

    def __init__(self) -> None:
        self.last = _cpu_times()

    def sample(self) -> wire.WorkerStats:
        now = _cpu_times()
        percent = 0.0
        if now and self.last and now[1] > self.last[1]:
            percent = 100.0 * (now[0] - self.last[0]) / (now[1] - self.last[1])
        self.last = now
        info = _meminfo()
        used_kb = info.get("MemTotal", 0) - info.get("MemAvailable", 0)
        return wire.WorkerStats(cpu_percent=round(percent, 1), memory_used_mb=used_kb // 1024)
