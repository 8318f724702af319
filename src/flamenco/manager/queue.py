"""The Manager's queue of leased tasks that no Worker runs yet, and the choice of the next one.

Kept in memory, by priority and then by job, each job's tasks in lease order, so that picking a
task for a Worker looks at the head of a few jobs instead of scanning every queued task.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from itertools import islice

from flamenco.core.matching import Requirements
from flamenco.manager.store import HeldTask

PICK_SCAN = 200  # queued tasks of one job looked at per assignment

Fits = Callable[[HeldTask], bool]
Anyone = Callable[[str, Requirements], bool]  # (job id, requirements) -> some Worker may


class TaskQueue:
    def __init__(self) -> None:
        self._by_priority: dict[int, dict[str, dict[str, HeldTask]]] = {}
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def add(self, held: HeldTask) -> None:
        jobs = self._by_priority.setdefault(held.priority, {})
        tasks = jobs.setdefault(held.job_id, {})
        last = next(reversed(tasks.values()), None)
        tasks[held.task_id] = held
        self._count += 1
        if last is not None and held.seq < last.seq:  # a requeued task goes back to its place
            jobs[held.job_id] = dict(sorted(tasks.items(), key=lambda item: item[1].seq))

    def remove(self, held: HeldTask) -> None:
        jobs = self._by_priority.get(held.priority, {})
        tasks = jobs.get(held.job_id, {})
        if tasks.pop(held.task_id, None) is None:
            return
        self._count -= 1
        if not tasks:
            del jobs[held.job_id]
            if not jobs:
                del self._by_priority[held.priority]

    def pick(self, fits: Fits, warm_job_id: str | None) -> HeldTask | None:
        """The first task `fits` accepts: highest priority first; among equals the job whose
        Blender the Worker has warm, else the task leased first."""
        for priority in sorted(self._by_priority, reverse=True):
            jobs = self._by_priority[priority]
            warm = jobs.get(warm_job_id) if warm_job_id else None
            if warm is not None and (held := _first(warm.values(), fits)) is not None:
                return held
            # The first fit leased, over the jobs: a job whose first task came after that
            # fit cannot hold an earlier one, so jobs are asked in the order of their first
            # task, and only until then (not every job's head on every assignment).
            best: HeldTask | None = None
            for tasks in sorted(jobs.values(), key=_first_seq):
                if best is not None and _first_seq(tasks) > best.seq:
                    break
                if tasks is not warm and (held := _first(tasks.values(), fits)) is not None:
                    best = held if best is None or held.seq < best.seq else best
            if best is not None:
                return best
        return None

    def unwanted(self, anyone_may: Anyone) -> list[HeldTask]:
        """The queued tasks `anyone_may` turns down, asked once per job and requirements."""
        verdicts: dict[tuple[str, Requirements], bool] = {}
        unwanted = []
        for jobs in self._by_priority.values():
            for job_id, tasks in jobs.items():
                for held in tasks.values():
                    key = (job_id, held.requirements)
                    if key not in verdicts:
                        verdicts[key] = anyone_may(job_id, held.requirements)
                    if not verdicts[key]:
                        unwanted.append(held)
        return unwanted


def _first(tasks: Iterable[HeldTask], fits: Fits) -> HeldTask | None:
    return next((held for held in islice(tasks, PICK_SCAN) if fits(held)), None)


def _first_seq(tasks: dict[str, HeldTask]) -> int:
    return next(iter(tasks.values())).seq
