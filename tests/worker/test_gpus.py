"""GPUs as Cycles sees them: the pure merging, the probe and the first standby Blender in real
Blender, a refused backend."""

from __future__ import annotations

import asyncio
import json
import shlex
import shutil
from pathlib import Path

import pytest

from flamenco import wire
from flamenco.config import WorkerSettings
from flamenco.worker.agent import WorkerAgent
from flamenco.worker.blender import BlenderInstall
from flamenco.worker.blender_pool import BlenderPool
from flamenco.worker.gpu_warmup import warm_up_gpus
from flamenco.worker.gpus import (
    CyclesDevice,
    detect_gpus,
    find_gpus,
    merge_gpus,
    parse_devices,
    parse_nvidia_line,
    probe_cycles_devices,
    refused_device,
    without_backend,
)
from flamenco.worker.reporting import TaskRun
from flamenco.worker.warm_blender import BlenderFailed

H200 = "NVIDIA H200"
PCI = "0000:01:00"


def _gpu(index: int, vendor: str, model: str, backends: list[str], mb: int = 0) -> wire.GpuInfo:
    return wire.GpuInfo(index=index, vendor=vendor, model=model, memory_mb=mb, backends=backends)


def _smi(line: str) -> wire.GpuInfo:
    gpu = parse_nvidia_line(line)
    assert gpu is not None
    return gpu


@pytest.mark.parametrize(
    ("devices", "nvidia", "expected"),
    [
        # No GPU Cycles can use: nothing, even when nvidia-smi lists a card.
        ([], [], []),
        ([], [_smi("0, NVIDIA H200, 143771")], []),
        # CUDA and OptiX list one card twice; nvidia-smi adds the model's memory and index.
        (
            [
                CyclesDevice("CUDA", H200, f"CUDA_{H200}_{PCI}"),
                CyclesDevice("OPTIX", H200, f"CUDA_{H200}_{PCI}_OptiX"),
            ],
            [_smi("3, NVIDIA H200, 143771")],
            [_gpu(3, "NVIDIA", H200, ["OPTIX", "CUDA"], 143771)],
        ),
        # Two cards of one model, told apart by Cycles' ids (CUDA listed first, then OptiX).
        (
            [
                CyclesDevice("CUDA", H200, f"CUDA_{H200}_0000:01:00"),
                CyclesDevice("CUDA", H200, f"CUDA_{H200}_0000:02:00"),
                CyclesDevice("OPTIX", H200, f"CUDA_{H200}_0000:01:00_OptiX"),
                CyclesDevice("OPTIX", H200, f"CUDA_{H200}_0000:02:00_OptiX"),
            ],
            [_smi("0, NVIDIA H200, 143771"), _smi("1, NVIDIA H200, 143771")],
            [
                _gpu(0, "NVIDIA", H200, ["OPTIX", "CUDA"], 143771),
                _gpu(1, "NVIDIA", H200, ["OPTIX", "CUDA"], 143771),
            ],
        ),
        # Two cards of one model, ids without a PCI address: the k-th of each backend pairs.
        (
            [
                CyclesDevice("CUDA", "RTX 4090"),
                CyclesDevice("CUDA", "RTX 4090"),
                CyclesDevice("OPTIX", "RTX 4090"),
                CyclesDevice("OPTIX", "RTX 4090"),
            ],
            [_smi("0, RTX 4090, 24564"), _smi("1, RTX 4090, 24564")],
            [
                _gpu(0, "NVIDIA", "RTX 4090", ["OPTIX", "CUDA"], 24564),
                _gpu(1, "NVIDIA", "RTX 4090", ["OPTIX", "CUDA"], 24564),
            ],
        ),
        # Cards of two models: each takes the nvidia-smi entry of its own name.
        (
            [CyclesDevice("CUDA", "RTX A6000", "CUDA_RTX A6000_0000:02:00")],
            [_smi("0, NVIDIA H200, 143771"), _smi("1, RTX A6000, 49140")],
            [_gpu(1, "NVIDIA", "RTX A6000", ["CUDA"], 49140)],
        ),
        # CUDA only (a Blender built without OptiX, or no OptiX driver), no nvidia-smi.
        (
            [CyclesDevice("CUDA", H200, f"CUDA_{H200}_{PCI}")],
            [],
            [_gpu(0, "NVIDIA", H200, ["CUDA"])],
        ),
        # AMD through HIP only: Cycles' own name, no memory (no vendor tool asked).
        (
            [
                CyclesDevice(
                    "HIP", "AMD Radeon RX 7900 XTX", "HIP_AMD Radeon RX 7900 XTX_0000:03:00"
                )
            ],
            [],
            [_gpu(0, "AMD", "AMD Radeon RX 7900 XTX", ["HIP"])],
        ),
        # An Intel and an AMD card in one machine.
        (
            [CyclesDevice("HIP", "RX 6800", "HIP_RX 6800_1"), CyclesDevice("ONEAPI", "Arc A770")],
            [],
            [_gpu(0, "AMD", "RX 6800", ["HIP"]), _gpu(1, "Intel", "Arc A770", ["ONEAPI"])],
        ),
        (
            [CyclesDevice("METAL", "Apple M2 Max")],
            [],
            [_gpu(0, "Apple", "Apple M2 Max", ["METAL"])],
        ),
    ],
)
def test_merge_gpus(
    devices: list[CyclesDevice], nvidia: list[wire.GpuInfo], expected: list[wire.GpuInfo]
) -> None:
    assert merge_gpus(devices, nvidia) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (None, []),
        ("CUDA", []),
        ([{"backend": "CPU", "name": "AMD EPYC"}, "junk"], []),
        ([{"backend": "cuda", "name": "X", "id": "CUDA_X"}], [CyclesDevice("CUDA", "X", "CUDA_X")]),
    ],
)
def test_parse_devices_keeps_known_backends(raw: object, expected: list[CyclesDevice]) -> None:
    assert parse_devices(raw) == expected


NV = _gpu(0, "NVIDIA", H200, ["OPTIX", "CUDA"], 143771)


@pytest.mark.parametrize(
    ("device", "gpus", "expected"),
    [
        ("OPTIX", [NV], [_gpu(0, "NVIDIA", H200, ["CUDA"], 143771)]),
        ("CUDA", [_gpu(0, "NVIDIA", H200, ["CUDA"])], []),
        ("GPU", [NV, _gpu(1, "AMD", "RX", ["HIP"])], []),
        ("HIP", [NV], [NV]),
    ],
)
def test_without_backend(
    device: str, gpus: list[wire.GpuInfo], expected: list[wire.GpuInfo]
) -> None:
    assert without_backend(gpus, device) == expected


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("Found no Cycles device of type OPTIX.", "OPTIX"),
        ("Found no Cycles device of type GPU.:\nsome Blender output", "GPU"),
        ("Blender (pid 3) exited with code 1 while rendering", None),
    ],
)
def test_refused_device(message: str, expected: str | None) -> None:
    assert refused_device(message) == expected


@pytest.mark.blender
def test_cycles_in_real_blender_lists_the_machines_gpus(
    blender_install: BlenderInstall, tmp_path: Path
) -> None:
    devices = probe_cycles_devices(blender_install, None, tmp_path / "user")
    gpus = detect_gpus(blender_install, None, None, tmp_path / "user")
    if shutil.which("nvidia-smi") is None:
        # This farm's test machines: no GPU, so Cycles lists none and the Worker offers none.
        assert devices == [] and gpus == []
    else:  # a GPU machine: each card Cycles lists is offered with the backends it has
        assert gpus and all(g.backends and g.memory_mb > 0 for g in gpus if g.vendor == "NVIDIA")


STAND_IN_CARD = "CUDA_NVIDIA Stand-In_0000:02:00"
STAND_IN_DEVICES = [
    {"backend": "OPTIX", "name": "NVIDIA Stand-In", "id": f"{STAND_IN_CARD}_OptiX"},
    {"backend": "CUDA", "name": "NVIDIA Stand-In", "id": STAND_IN_CARD},
]


def _runtime_with_a_gpu(real: BlenderInstall, folder: Path) -> BlenderInstall:
    """The real Blender behind a stand-in for the GPU only (this machine has none): asked for
    Cycles' devices, by the probe or by a Blender on standby, it names one NVIDIA card. A probe
    run leaves the file `probe-ran` in `folder`."""
    devices = json.dumps({"event": "devices", "devices": STAND_IN_DEVICES})
    say = f"printf '\\n@@FLAMENCO@@ %s\\n' '{devices}'"
    wrapper = folder / "bpy-with-a-gpu"
    folder.mkdir(parents=True, exist_ok=True)
    wrapper.write_text(
        "#!/bin/sh\n"
        f'case "$*" in *cycles_probe.py*) : > {folder / "probe-ran"}; {say}; exit 0;; esac\n'
        f'case "$*" in *--list-devices*) {say}\n'
        '  for a in "$@"; do shift; [ "$a" = --list-devices ] || set -- "$@" "$a"; done;;\nesac\n'
        f'exec {shlex.join(real.argv_prefix)} "$@"\n'
    )
    wrapper.chmod(0o755)
    return BlenderInstall((str(wrapper),), real.kind, real.version)


def _pool(install: BlenderInstall, folder: Path, standby: bool) -> BlenderPool:
    """A Worker's Blender pool of `install` alone, with its folders under `folder`."""
    return BlenderPool(
        [install],
        user_resources=folder / "user",
        env={},
        temp_root=folder / "temp",
        standby=standby,
        worker_name="w1",
    )


@pytest.mark.blender
def test_the_first_standby_blender_names_the_devices_a_probe_would(
    blender_install: BlenderInstall, tmp_path: Path
) -> None:
    async def standby_devices() -> tuple[object, bool]:
        pool = _pool(blender_install, tmp_path, standby=True)
        try:
            event = await pool.standby_devices()
            return event, pool.standby is not None and pool.standby.on_standby
        finally:
            await pool.shutdown()

    event, still_on_standby = asyncio.run(standby_devices())
    assert isinstance(event, dict) and event["event"] == "devices" and "error" not in event
    assert parse_devices(event["devices"]) == probe_cycles_devices(
        blender_install, None, tmp_path / "user"
    )
    assert still_on_standby  # it then waits for the first job, as any Blender on standby


@pytest.mark.blender
@pytest.mark.parametrize("standby", [True, False])
def test_a_worker_offers_the_gpus_cycles_names_with_or_without_standby(
    blender_install: BlenderInstall, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, standby: bool
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "no-nvidia-smi"))  # only Cycles' word counts
    install = _runtime_with_a_gpu(blender_install, tmp_path / "bin")
    settings = WorkerSettings(
        data_dir=tmp_path / "w",
        manager="http://127.0.0.1:9",
        name="w1",
        standby_blender=standby,
    )
    agent = WorkerAgent(settings, install)

    async def find() -> tuple[list[wire.GpuInfo], bool]:
        try:
            return await find_gpus(agent.pool, agent.gpu_pin), agent.pool.standby is not None
        finally:
            await agent.pool.shutdown()
            await agent.api.close()
            agent.outbox.close()

    gpus, standing_by = asyncio.run(find())
    assert gpus == [_gpu(0, "NVIDIA", "NVIDIA Stand-In", ["OPTIX", "CUDA"])]
    assert standing_by is standby  # with standby, the Blender that answered waits for a job
    assert (tmp_path / "bin" / "probe-ran").exists() is not standby  # no Blender run for it


@pytest.mark.blender
def test_a_backend_blender_refuses_leaves_the_workers_capabilities(
    blender_install: BlenderInstall, demo_scene: Path, tmp_path: Path
) -> None:
    settings = WorkerSettings(data_dir=tmp_path / "w", manager="http://127.0.0.1:9", name="w1")
    agent = WorkerAgent(settings, blender_install)
    # As if Cycles had listed an OptiX and CUDA card that the render then does not find.
    agent.info = agent.info.model_copy(update={"gpus": [NV]})
    agent.info_sent = True
    job_dir = tmp_path / "job"
    job_dir.mkdir()
    shutil.copy(demo_scene, job_dir / "scene.blend")
    run = TaskRun(
        wire.Assignment(
            task_id="t1",
            job_id="j1",
            job_name="gpu job",
            name="render 1",
            type="blender-render",
            frames=[1],
            command={"blend": "scene.blend", "render_device": "OPTIX"},
            files={},
        )
    )

    async def render() -> None:
        try:
            await agent._run_command(run, job_dir, agent._reporter(run, job_dir))
        finally:
            await agent.pool.stop()
            await agent.api.close()
            agent.outbox.close()

    with pytest.raises(BlenderFailed, match="Found no Cycles device of type OPTIX"):
        asyncio.run(render())
    assert agent.info.gpus == [_gpu(0, "NVIDIA", H200, ["CUDA"], 143771)]
    assert agent.info_sent is False  # the next sync carries the new capabilities


@pytest.mark.blender
def test_the_warm_up_renders_a_frame_with_each_backend_in_the_pools_blender(
    blender_install: BlenderInstall, tmp_path: Path
) -> None:
    # "CPU" stands in for a GPU backend here (no GPU on this machine): the same render path.
    pool = _pool(blender_install, tmp_path, standby=False)
    asyncio.run(warm_up_gpus(pool, ["CPU"], tmp_path / "warmup"))
    (frame,) = (tmp_path / "warmup" / "cpu").iterdir()
    assert frame.stat().st_size > 0 and frame.suffix == ".png"
