"""Finding the GPUs a Worker can render on, and keeping their compiled kernels.

Which GPUs there are is asked of Cycles itself, in the Worker's Blender (`cycles_probe.py`,
run by the Worker's first Blender on standby, or by a Blender of its own when there is none):
only Cycles knows whether its kernels, the driver and a backend fit together. nvidia-smi,
where it exists, only adds the model and memory of NVIDIA cards.

Cycles compiles its GPU kernels the first time it meets a GPU generation (measured: 379 s on
an H200 with Blender 5.0). The caches it compiles into live in the Worker's data folder so
that they survive Blender processes and Worker restarts.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from flamenco import wire
from flamenco.core.matching import GPU_BACKENDS
from flamenco.worker.blender import (
    BlenderInstall,
    Event,
    child_env,
    default_user_resources,
    parse_line,
)
from flamenco.worker.blender_pool import BlenderPool

log = logging.getLogger("flamenco.worker.gpus")

NVIDIA_BACKENDS = ("OPTIX", "CUDA")
VENDORS = {"OPTIX": "NVIDIA", "CUDA": "NVIDIA", "HIP": "AMD", "ONEAPI": "Intel", "METAL": "Apple"}
CUDA_CACHE_BYTES = 4 * 1024**3  # the driver's maximum; the default 256 MB is too small
QUERY_TIMEOUT_S = 15
PROBE_TIMEOUT_S = 120  # a Blender start; slow on a loaded machine, never minutes
PROBE_SCRIPT = Path(__file__).with_name("cycles_probe.py")
# What Blender says when a job's backend has no device here (blender_child.configure_device).
NO_DEVICE = "Found no Cycles device of type "


@dataclass(frozen=True)
class CyclesDevice:
    """One device in Cycles' list: its backend (CUDA, OPTIX, HIP...), name and Cycles id."""

    backend: str
    name: str
    id: str = ""

    def card(self) -> str:
        """What names the physical card, "" when Cycles gave no id. Cycles lists an NVIDIA card
        twice: its OptiX id is its CUDA id with "_OptiX" appended (Cycles' device_optix_info)."""
        return self.id.removesuffix("_OptiX")


def detect_gpus(
    install: BlenderInstall,
    pin: int | None = None,
    env: Mapping[str, str] | None = None,
    user_resources: Path | None = None,
) -> list[wire.GpuInfo]:
    """The GPUs of this machine that Cycles in `install` can use; only GPU `pin` when given
    (`env` from gpu_environment hides the others from Cycles too)."""
    return usable_gpus(probe_cycles_devices(install, env, user_resources), install, pin)


def usable_gpus(
    devices: Sequence[CyclesDevice], install: BlenderInstall, pin: int | None = None
) -> list[wire.GpuInfo]:
    """The cards of Cycles' `devices` list, with what nvidia-smi adds (of GPU `pin` only)."""
    nvidia = [gpu for gpu in _nvidia_gpus() if pin is None or gpu.index == pin]
    gpus = merge_gpus(devices, nvidia)
    if nvidia and not any(gpu.vendor == "NVIDIA" for gpu in gpus):
        log.warning(
            "nvidia-smi lists %d NVIDIA GPU(s) but Cycles in Blender %s can use none of them "
            "(a driver too old for this Blender?); this Worker renders on the CPU only",
            len(nvidia),
            install.version,
        )
    return gpus


async def find_gpus(pool: BlenderPool, pin: int | None) -> list[wire.GpuInfo]:
    """The GPUs a Worker offers, as Cycles in its newest Blender lists them: asked of the first
    Blender on standby (the Worker keeps one anyway), or of a Blender run for it when standby
    is off or failed."""
    install = pool.newest
    event = await pool.standby_devices()
    if event is not None:
        return usable_gpus(devices_of(event, install), install, pin)
    return await asyncio.to_thread(detect_gpus, install, pin, pool.env, pool.user_resources)


def probe_cycles_devices(
    install: BlenderInstall,
    env: Mapping[str, str] | None = None,
    user_resources: Path | None = None,
) -> list[CyclesDevice]:
    """Cycles' own device list, from a short Blender run; none when that Blender fails."""
    folder = user_resources or default_user_resources()
    argv = install.script_argv(PROBE_SCRIPT, [])
    try:
        done = subprocess.run(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            timeout=PROBE_TIMEOUT_S,
            env=child_env(folder, env),
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.warning("could not ask Blender %s for its Cycles devices: %s", install.version, exc)
        return []
    lines = done.stdout.splitlines()
    events = [event for raw in lines if (event := parse_line(raw)[1]) is not None]
    found = [e for e in events if e.get("event") == "devices"]
    if done.returncode != 0 or not found:
        tail = b"\n".join(lines[-10:]).decode(errors="replace")
        log.warning("Blender %s did not list its Cycles devices: %s", install.version, tail)
        return []
    return devices_of(found[-1], install)


def devices_of(event: Event, install: BlenderInstall) -> list[CyclesDevice]:
    """The devices of a `devices` event (`cycles_probe.py`), saying why when Cycles failed."""
    if event.get("error"):
        log.warning(
            "Blender %s could not list its Cycles devices: %s", install.version, event["error"]
        )
    return parse_devices(event.get("devices"))


def parse_devices(raw: object) -> list[CyclesDevice]:
    """The probe's list, keeping only entries of a backend Flamenco knows."""
    if not isinstance(raw, list):
        return []
    return [
        CyclesDevice(str(d["backend"]).upper(), str(d.get("name", "")), str(d.get("id", "")))
        for d in raw
        if isinstance(d, dict) and str(d.get("backend", "")).upper() in GPU_BACKENDS
    ]


def merge_gpus(
    devices: Sequence[CyclesDevice], nvidia: Sequence[wire.GpuInfo]
) -> list[wire.GpuInfo]:
    """One GpuInfo per physical card Cycles lists, with every backend it offers for it;
    an NVIDIA card takes the index, model and memory of the nvidia-smi entry of its name."""
    cards: dict[str, tuple[str, str, list[str]]] = {}  # key -> vendor, name, backends
    seen: dict[tuple[str, str], int] = {}
    for device in devices:
        # Without a usable id, the k-th device of a name is the k-th card of that name.
        nth = seen[(device.backend, device.name)] = seen.get((device.backend, device.name), 0) + 1
        key = device.card() or f"{VENDORS[device.backend]}:{device.name}#{nth}"
        vendor, name, backends = cards.setdefault(key, (VENDORS[device.backend], device.name, []))
        if device.backend not in backends:
            backends.append(device.backend)
    unmatched = list(nvidia)
    gpus = []
    for position, (vendor, name, backends) in enumerate(cards.values()):
        ordered = [b for b in GPU_BACKENDS if b in backends]
        smi = _take_nvidia(unmatched, name) if vendor == "NVIDIA" else None
        gpus.append(
            wire.GpuInfo(
                index=smi.index if smi else position,
                vendor=vendor,
                model=smi.model if smi else name,
                memory_mb=smi.memory_mb if smi else 0,
                backends=ordered,
            )
        )
    return gpus


def _take_nvidia(unmatched: list[wire.GpuInfo], name: str) -> wire.GpuInfo | None:
    """The first nvidia-smi entry of that model, else the first left; removed from the list."""
    for gpu in unmatched:
        if gpu.model == name:
            unmatched.remove(gpu)
            return gpu
    return unmatched.pop(0) if unmatched else None


def without_backend(gpus: Iterable[wire.GpuInfo], device: str) -> list[wire.GpuInfo]:
    """The GPUs left once Blender refused `device` (a backend, or GPU for any): that backend
    goes from every card, and a card with no backend left goes."""
    left = []
    for gpu in gpus:
        backends = [] if device == "GPU" else [b for b in gpu.backends if b != device]
        if backends:
            left.append(gpu.model_copy(update={"backends": backends}))
    return left


def refused_device(message: str) -> str | None:
    """The device Blender said it has no Cycles device for, or None."""
    if NO_DEVICE not in message:
        return None
    return message.split(NO_DEVICE, 1)[1].split(".", 1)[0].split()[0].strip().upper() or None


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
    return [gpu for line in done.stdout.splitlines() if (gpu := parse_nvidia_line(line))]


def parse_nvidia_line(line: str) -> wire.GpuInfo | None:
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
