"""GPU warm-up: compile a Worker's GPU kernels when it starts, so that no job's first task
waits minutes for them. A tiny demo scene is rendered once per backend the GPU offers; the
kernels land in the Worker's kernel caches (`gpus.gpu_environment`)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from pathlib import Path

from flamenco.demo.scene import DemoSceneError, build_demo_scene
from flamenco.worker.blender_pool import BlenderPool
from flamenco.worker.warm_blender import BlenderFailed

log = logging.getLogger("flamenco.worker")


async def warm_up_gpus(pool: BlenderPool, backends: Sequence[str], folder: Path) -> None:
    """Render one small frame with each backend, in the pool's newest Blender (as a GPU job
    would); a failure is logged, never raised (the GPU jobs will tell why)."""
    install, worker_name = pool.newest, pool.worker_name
    try:
        scene = await asyncio.to_thread(
            build_demo_scene,
            install,
            folder / "warmup.blend",
            frames=1,
            resolution=(32, 32),
            samples=1,
            user_resources=pool.user_resources,
        )
        for backend in backends:
            started = time.monotonic()
            async with pool.new_blender(scene, backend) as blender:
                await blender.render([1], folder / backend.lower())
            log.info(
                "GPU kernels for %s ready after %.1f s",
                backend,
                time.monotonic() - started,
                extra={"worker": worker_name},
            )
    except (BlenderFailed, DemoSceneError, OSError) as exc:
        log.warning(
            "GPU warm-up failed; GPU jobs will tell why: %s", exc, extra={"worker": worker_name}
        )
