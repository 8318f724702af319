"""GPU warm-up: compile a Worker's GPU kernels when it starts, so that no job's first task
waits minutes for them. A tiny demo scene is rendered once per backend the GPU offers; the
kernels land in the Worker's kernel caches (`gpus.gpu_environment`)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from flamenco.demo.scene import DemoSceneError, build_demo_scene
from flamenco.worker.blender import BlenderInstall
from flamenco.worker.warm_blender import BlenderFailed, WarmBlender

log = logging.getLogger("flamenco.worker")


async def warm_up_gpus(
    install: BlenderInstall,
    backends: Sequence[str],
    folder: Path,
    *,
    env: Mapping[str, str],
    user_resources: Path,
    temp_root: Path,
    worker_name: str,
) -> None:
    """Render one small frame with each backend; a failure is logged, never raised (the
    GPU jobs will tell why)."""
    try:
        scene = await asyncio.to_thread(
            build_demo_scene,
            install,
            folder / "warmup.blend",
            frames=1,
            resolution=(32, 32),
            samples=1,
            user_resources=user_resources,
        )
        for backend in backends:
            started = time.monotonic()
            async with WarmBlender(
                install,
                scene,
                device=backend,
                env=env,
                user_resources=user_resources,
                temp_root=temp_root,
            ) as blender:
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
