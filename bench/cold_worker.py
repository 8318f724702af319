"""A Worker that starts a fresh Blender for every task, as farms without a warm Blender do.

    python bench/cold_worker.py --manager URL --name NAME --data-dir DIR

(environment as for `flamenco worker`).

Same options, environment and behaviour as `flamenco worker`, except that the Blender of a
task is never reused: each task starts a new Blender process (import bpy, load the .blend,
first-frame kernel warm-up) and the process is terminated when the task ends. Only for
benchmarks; the real Worker lives in src/flamenco/worker/agent.py.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import probes  # bench/ is not a package

from flamenco.worker import agent
from flamenco.worker.blender_pool import BlenderPool
from flamenco.worker.warm_blender import WarmBlender


class ColdBlenderPool(BlenderPool):
    async def for_job(self, *args: Any, **kwargs: Any) -> WarmBlender:
        await self.stop()  # never reuse: the parent class then starts a new one
        return await super().for_job(*args, **kwargs)


class ColdWorkerAgent(agent.WorkerAgent):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        pool = self.pool
        self.pool = ColdBlenderPool(
            pool.installs,
            user_resources=pool.user_resources,
            env=pool.env,
            temp_root=pool.temp_root,
            standby=pool.standby_wanted,
            worker_name=pool.worker_name,
        )

    async def _run_task(self, run: agent.TaskRun) -> None:
        try:
            await super()._run_task(run)
        finally:
            # Before the Worker asks for its next task, like `blender -b file -f N` exiting.
            await self.pool.stop()


def main() -> None:
    probes.install_from_env("worker")  # probes go on the parent class, before the swap
    # The `worker` command imports WorkerAgent from the module when it runs.
    agent.WorkerAgent = ColdWorkerAgent  # type: ignore[misc]
    probes.run_cli(["worker", *sys.argv[1:]])


if __name__ == "__main__":
    main()
