"""Finding the GPUs a Worker can render on, and keeping their compiled kernels.

Cycles compiles its GPU kernels the first time it meets a GPU generation (measured: 379 s on
an H200 with Blender 5.0). The caches it compiles into live in the Worker's data folder so
that they survive Blender processes and Worker restarts.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
from pathlib import Path

from flamenco import wire

log = logging.getLogger("flamenco.worker.gpus")

NVIDIA_BACKENDS = ["OPTIX", "CUDA"]
CUDA_CACHE_BYTES = 4 * 1024**3  # the driver's maximum; the default 256 MB is too small
QUERY_TIMEOUT_S = 15


def detect_gpus(pin: int | None = None) -> list[wire.GpuInfo]:
    """The GPUs of this machine that Cycles can use; only GPU `pin` when given."""
    gpus = _nvidia_gpus()
    if not gpus and sys.platform == "darwin":
        gpus = [wire.GpuInfo(index=0, vendor="Apple", model="Apple GPU", backends=["METAL"])]
    if pin is not None:
        gpus = [gpu for gpu in gpus if gpu.index == pin]
    return gpus


def _nvidia_gpus() -> list[wire.GpuInfo]:
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return []
    query = [smi, "--query-gpu=index,name,memory.total", "--format=csv,noheader,nounits"]
    try:
        done = subprocess.run(
            query, capture_output=True, text=True, timeout=QUERY_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.warning("nvidia-smi did not answer: %s", exc)
        return []
    if done.returncode != 0:
        log.warning("nvidia-smi failed: %s", done.stderr.strip() or done.stdout.strip())
        return []
    return [gpu for line in done.stdout.splitlines() if (gpu := _parse_nvidia_line(line))]


def _parse_nvidia_line(line: str) -> wire.GpuInfo | None:
    parts = [part.strip() for part in line.split(",")]
    if len(parts) != 3 or not parts[0].isdigit():
        return None
    memory = int(parts[2]) if parts[2].isdigit() else 0
    return wire.GpuInfo(
        index=int(parts[0]),
        vendor="NVIDIA",
        model=parts[1],
        memory_mb=memory,
        backends=list(NVIDIA_BACKENDS),
    )


def gpu_environment(data_dir: Path, pin: int | None) -> dict[str, str]:
    """Environment for Blender: persistent kernel caches, and the pinned GPU only."""
    cache = data_dir / "gpu-kernel-cache"
    env = {
        "CUDA_CACHE_PATH": str(cache / "cuda"),
        "CUDA_CACHE_MAXSIZE": str(CUDA_CACHE_BYTES),
        "OPTIX_CACHE_PATH": str(cache / "optix"),
        "OPTIX_CACHE_MAXSIZE": str(CUDA_CACHE_BYTES),
    }
    if pin is not None:
        env["CUDA_VISIBLE_DEVICES"] = str(pin)
        env["HIP_VISIBLE_DEVICES"] = str(pin)
    return env
