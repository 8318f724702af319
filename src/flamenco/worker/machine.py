"""What the Worker says about its machine: memory, and CPU use since it last said so."""

from __future__ import annotations

from flamenco import procs, wire


def describe_machine(
    blender_versions: list[str],
    tags: list[str],
    gpus: list[wire.GpuInfo],
    commands: list[str] | None = None,
) -> wire.WorkerInfo:
    """What the Worker tells its Manager about itself when it registers (newest Blender last,
    the commands it has)."""
    return wire.WorkerInfo(
        platform=procs.os_description(),
        cpu_count=procs.cpu_count(),
        memory_mb=procs.memory_mb(),
        blender_version=blender_versions[-1],
        blender_versions=blender_versions,
        tags=tags,
        gpus=gpus,
        commands=commands,
    )


class StatsSampler:
    """CPU use between two samples, and memory in use now (`procs`: any operating system)."""

    def __init__(self) -> None:
        self.last = procs.cpu_busy_and_total_s()

    def sample(self) -> wire.WorkerStats:
        now = procs.cpu_busy_and_total_s()
        percent = 0.0
        if now[1] > self.last[1]:
            percent = 100.0 * (now[0] - self.last[0]) / (now[1] - self.last[1])
        self.last = now
        return wire.WorkerStats(
            cpu_percent=round(min(max(percent, 0.0), 100.0), 1),
            memory_used_mb=procs.memory_used_mb(),
        )
