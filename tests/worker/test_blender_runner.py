"""WarmBlender against a real Blender (bpy wheel or executable); no mocks."""

from __future__ import annotations

import asyncio
import itertools
import os
import subprocess
import time
from pathlib import Path

import pytest
from PIL import Image

from flamenco.blendfile import blend_version
from flamenco.core.faults import Fault, classify_failure
from flamenco.demo.scene import build_demo_scene
from flamenco.worker.blender import BlenderInstall, Event, child_env, parse_line
from flamenco.worker.warm_blender import BlenderFailed, BlenderTerminated, WarmBlender

pytestmark = pytest.mark.blender


@pytest.fixture(scope="module")
def install(blender_install: BlenderInstall) -> BlenderInstall:
    return blender_install


@pytest.fixture(scope="module")
def user_resources(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("blender-user")


@pytest.fixture(scope="module")
def small_scene(
    install: BlenderInstall, user_resources: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    out = tmp_path_factory.mktemp("scene") / "demo.blend"
    return build_demo_scene(
        install, out, frames=6, resolution=(64, 48), samples=8, user_resources=user_resources
    )


class Recorder:
    def __init__(self) -> None:
        self.events: list[Event] = []

    async def __call__(self, event: Event) -> None:
        self.events.append(event)

    def of(self, kind: str) -> list[Event]:
        return [e for e in self.events if e["event"] == kind]


def test_parse_line_finds_marker_after_partial_blender_line() -> None:
    plain, event = parse_line(b'Fra:1 Mem:8M | Sample 1/8@@FLAMENCO@@ {"event": "done"}\n')
    assert plain == "Fra:1 Mem:8M | Sample 1/8"
    assert event == {"event": "done"}
    assert parse_line(b"Blender quit\n") == ("Blender quit", None)


def test_a_blender_on_standby_opens_its_file_later_in_the_same_process(
    install: BlenderInstall, small_scene: Path, user_resources: Path, tmp_path: Path
) -> None:
    async def scenario() -> tuple[int | None, int | None, list[Path], bool]:
        async with WarmBlender(install, None, user_resources=user_resources) as wb:
            standby_pid, was_on_standby = wb.pid, wb.on_standby
            ready = await wb.open(small_scene, "CPU")
            assert ready.resolution == (64, 48) and not wb.on_standby
            paths = await wb.render([2], tmp_path, "frame_######", "PNG")
            return standby_pid, ready.pid, paths, was_on_standby

    standby_pid, ready_pid, paths, was_on_standby = asyncio.run(scenario())
    assert was_on_standby and standby_pid == ready_pid
    assert paths == [tmp_path / "frame_000002.png"]
    assert Image.open(paths[0]).size == (64, 48)


def test_a_blender_on_standby_reports_a_file_it_cannot_open(
    install: BlenderInstall, user_resources: Path, tmp_path: Path
) -> None:
    broken = tmp_path / "broken.blend"
    broken.write_bytes(b"BLENDER-v300 not really")

    async def scenario() -> str:
        async with WarmBlender(install, None, user_resources=user_resources) as wb:
            with pytest.raises(BlenderFailed) as failed:
                await wb.open(broken, "CPU")
            assert not wb.alive
            return str(failed.value)

    assert str(broken) in asyncio.run(scenario())


def test_warm_blender_renders_two_batches_in_one_process(
    install: BlenderInstall, small_scene: Path, user_resources: Path, tmp_path: Path
) -> None:
    out_dir = tmp_path / "frames"
    rec = Recorder()

    async def scenario() -> tuple[list[Path], list[int | None]]:
        async with WarmBlender(install, small_scene, user_resources=user_resources) as wb:
            assert wb.ready is not None and wb.ready.resolution == (64, 48)
            assert wb.ready.pid == wb.pid
            pids = [wb.pid]
            paths = await wb.render([1, 2, 3], out_dir, "frame_######", "PNG", rec)
            pids.append(wb.pid)
            paths += await wb.render([4, 5, 6], out_dir, "frame_######", "PNG", rec)
            pids.append(wb.pid)
            assert wb.renders == 2 and wb.alive
        assert not wb.alive
        return paths, pids

    paths, pids = asyncio.run(scenario())
    assert len(set(pids)) == 1
    assert paths == [out_dir / f"frame_{f:06d}.png" for f in range(1, 7)]
    images = [_load_png(p) for p in paths]
    for before, after in itertools.pairwise(images):
        assert before.tobytes() != after.tobytes(), "consecutive frames must differ"
    assert [e["frame"] for e in rec.of("frame")] == [1, 2, 3, 4, 5, 6]
    # Each frame says what its file must be, for the Worker's check (flamenco.frame_check).
    assert {(tuple(e["size"]), e["file_format"]) for e in rec.of("frame")} == {((64, 48), "PNG")}
    progress = rec.of("progress")
    assert progress and all(e["samples"] == 8 for e in progress)
    assert {e["frame"] for e in progress} == {1, 2, 3, 4, 5, 6}
    assert rec.of("log"), "Blender's own output must be relayed as log events"


def _load_png(path: Path) -> Image.Image:
    assert path.is_file(), path
    with Image.open(path) as img:
        assert img.format == "PNG"
        assert img.size == (64, 48)
        img.load()
        colours = img.getcolors(maxcolors=64 * 48)
        assert colours is not None and len(colours) > 1, f"{path} is blank"
        return img.copy()


def test_terminate_stops_a_long_render_quickly(
    install: BlenderInstall, user_resources: Path, tmp_path: Path
) -> None:
    scene = build_demo_scene(
        install, tmp_path / "slow.blend", frames=2, resolution=(64, 48), samples=100_000,
        user_resources=user_resources,
    )  # fmt: skip

    async def scenario() -> tuple[float, int, BaseException | None]:
        wb = WarmBlender(install, scene, user_resources=user_resources)
        await wb.start()
        started = asyncio.Event()

        async def on_event(event: Event) -> None:
            if event["event"] == "progress":
                started.set()

        task = asyncio.create_task(wb.render([1], tmp_path / "out", on_event=on_event))
        await asyncio.wait_for(started.wait(), 30)
        t0 = time.monotonic()
        await wb.terminate()
        elapsed = time.monotonic() - t0
        await wb.terminate()  # idempotent
        error = (await asyncio.gather(task, return_exceptions=True))[0]
        assert not wb.alive
        assert wb.pid is not None
        return elapsed, wb.pid, error

    elapsed, pid, error = asyncio.run(scenario())
    assert elapsed < 5.0
    assert isinstance(error, BlenderTerminated), error
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_unreadable_blend_fails_to_start(
    install: BlenderInstall, user_resources: Path, tmp_path: Path
) -> None:
    garbage = tmp_path / "x.blend"
    garbage.write_bytes(os.urandom(4096))
    wb = WarmBlender(install, garbage, user_resources=user_resources)
    with pytest.raises(BlenderFailed) as info:
        asyncio.run(wb.start())
    message = str(info.value)
    assert "could not read" in message.lower() and "x.blend" in message
    assert not wb.alive


def test_missing_gpu_device_is_an_error_not_a_cpu_fallback(
    install: BlenderInstall, small_scene: Path, user_resources: Path
) -> None:
    wb = WarmBlender(install, small_scene, device="OPTIX", user_resources=user_resources)
    with pytest.raises(BlenderFailed, match="Found no Cycles device of type OPTIX"):
        asyncio.run(wb.start())
    assert not wb.alive


BREAK_DRIVER = """
import sys
import bpy
src, dst = sys.argv[sys.argv.index("--") + 1 :] if "--" in sys.argv else sys.argv[1:]
bpy.ops.wm.open_mainfile(filepath=src)
fcurve = bpy.data.objects["Sphere"].driver_add("scale", 0)
fcurve.driver.type = "SCRIPTED"
fcurve.driver.expression = "no_such_function(frame)"
bpy.ops.wm.save_as_mainfile(filepath=dst)
"""


def test_broken_python_driver_is_reported_as_warning(
    install: BlenderInstall, small_scene: Path, user_resources: Path, tmp_path: Path
) -> None:
    script = tmp_path / "break_driver.py"
    script.write_text(BREAK_DRIVER)
    broken = tmp_path / "driver.blend"
    argv = install.script_argv(script, [str(small_scene), str(broken)])
    subprocess.run(argv, env=child_env(user_resources), check=True, capture_output=True)
    rec = Recorder()

    async def scenario() -> list[str]:
        async with WarmBlender(install, broken, user_resources=user_resources) as wb:
            await wb.render([1], tmp_path / "out", on_event=rec)
        return wb.warnings

    warnings = asyncio.run(scenario())
    # Blender complains while loading, before any render command: the WarmBlender keeps it.
    assert any("Error in PyDriver" in line for line in warnings)


RAISING_HANDLER = """
import sys
import bpy
src, dst = sys.argv[sys.argv.index("--") + 1 :] if "--" in sys.argv else sys.argv[1:]
bpy.ops.wm.open_mainfile(filepath=src)
text = bpy.data.texts.new("rig.py")
text.write(
    "import bpy\\n"
    "def rig(*args):\\n"
    "    raise ValueError('the rig broke')\\n"
    "bpy.app.handlers.frame_change_pre.append(rig)\\n"
)
text.use_module = True  # registered: runs when the file is opened with scripts allowed
bpy.ops.wm.save_as_mainfile(filepath=dst)
"""


def _with_raising_handler(
    install: BlenderInstall, small_scene: Path, user_resources: Path, folder: Path
) -> Path:
    """The small scene plus a registered text block whose frame handler always raises."""
    script = folder / "raising_handler.py"
    script.write_text(RAISING_HANDLER)
    broken = folder / "handler.blend"
    argv = install.script_argv(script, [str(small_scene), str(broken)])
    subprocess.run(argv, env=child_env(user_resources), check=True, capture_output=True)
    return broken


def test_an_exception_of_the_files_own_script_fails_the_render_as_the_files_fault(
    install: BlenderInstall, small_scene: Path, user_resources: Path, tmp_path: Path
) -> None:
    broken = _with_raising_handler(install, small_scene, user_resources, tmp_path)

    async def scenario() -> str:
        async with WarmBlender(install, broken, user_resources=user_resources) as wb:
            with pytest.raises(BlenderFailed) as failed:
                await wb.render([1], tmp_path / "out")
            assert wb.alive  # the file's fault: this Blender goes on with the next command
        return str(failed.value)

    message = asyncio.run(scenario())
    assert message == "The file's own script rig.py raised ValueError: the rig broke (frame 1)"
    assert classify_failure(message, blend_version(broken), (5, 0, 1)) == Fault.FILE


@pytest.mark.parametrize("started", ["with its file", "on standby"])
def test_without_scripts_the_files_own_text_blocks_do_not_run(
    install: BlenderInstall, small_scene: Path, user_resources: Path, tmp_path: Path, started: str
) -> None:
    broken = _with_raising_handler(install, small_scene, user_resources, tmp_path)

    async def scenario() -> list[Path]:
        if started == "on standby":
            async with WarmBlender(install, None, user_resources=user_resources) as wb:
                await wb.open(broken, "CPU", scripts=False)
                return await wb.render([1], tmp_path / "out")
        blender = WarmBlender(install, broken, scripts=False, user_resources=user_resources)
        async with blender as wb:
            return await wb.render([1], tmp_path / "out")

    # The handler that would have failed every frame was never registered.
    assert [p.name for p in asyncio.run(scenario())] == ["frame_000001.png"]
