"""The Worker runs each task with the command its type names (flamenco.commands): the
installed built-ins and the old type name, the contract's sentence for a command it lacks,
and what a command reports reaching the Worker's outbox (a real one) as updates and files."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from flamenco import wire
from flamenco.commands import CommandTask, Reporter
from flamenco.commands.blender_render import BlenderRender
from flamenco.commands.registry import CommandNotInstalled, command_for, installed_commands
from flamenco.config import WorkerSettings
from flamenco.core.faults import Fault
from flamenco.outbox import FrameItem
from flamenco.worker.agent import WorkerAgent
from flamenco.worker.blender import BlenderInstall
from flamenco.worker.reporting import TaskRun

pytestmark = pytest.mark.blender  # a WorkerAgent looks for its Blender


def test_the_built_in_commands_are_installed_and_blender_is_blender_render() -> None:
    installed = installed_commands()
    assert {"blender-render", "blender-script", "ffmpeg"} <= set(installed)
    assert all(command.name == name for name, command in installed.items())
    assert isinstance(command_for("blender", installed), BlenderRender)  # leased before 16 §3
    with pytest.raises(CommandNotInstalled) as missing:
        command_for("bake-ocean", installed)
    assert missing.value.message == "This Worker has no command bake-ocean installed."
    assert missing.value.fault == Fault.MACHINE


class Writes:
    """Two frames, one job file inside the job's folder and one outside it."""

    name = "writes"

    async def run(self, task: CommandTask, report: Reporter) -> None:
        task.out_dir.mkdir(parents=True)
        for frame in task.frames:
            path = task.out_dir / f"f_{frame:04d}.png"
            Image.new("RGB", (4, 3), (frame, 0, 0)).save(path)
            await report.output(path, frame, size=(4, 3), file_format="PNG")
        inside = task.job_dir / "cache" / "data.bin"
        inside.parent.mkdir(parents=True)
        inside.write_bytes(b"baked")
        await report.output(inside)
        (task.out_dir / "summary.txt").write_text("2 frames")
        await report.output(task.out_dir / "summary.txt")
        report.log("all written")


class WritesAFrameOfAnotherTask:
    name = "strays"

    async def run(self, task: CommandTask, report: Reporter) -> None:
        task.out_dir.mkdir(parents=True)
        Image.new("RGB", (4, 3)).save(task.out_dir / "f_0009.png")
        await report.output(task.out_dir / "f_0009.png", 9)


class Breaks:
    name = "breaks"

    async def run(self, task: CommandTask, report: Reporter) -> None:
        report.log("about to break")
        raise KeyError("size")


def _run(
    agent: WorkerAgent, task_type: str, frames: list[int]
) -> tuple[list[wire.TaskUpdate], list[FrameItem]]:
    """Run one hand-made task through the Worker; what its outbox then holds."""
    assignment = wire.Assignment(
        task_id=f"t-{task_type}",
        job_id="j1",
        job_name="job",
        name=f"{task_type} task",
        type=task_type,
        frames=frames,
        command={},
        files={},
    )

    async def scenario() -> tuple[list[wire.TaskUpdate], list[FrameItem]]:
        await agent._run_task(TaskRun(assignment))
        return await _outbox_contents(agent)

    return asyncio.run(scenario())


async def _outbox_contents(agent: WorkerAgent) -> tuple[list[wire.TaskUpdate], list[FrameItem]]:
    """Everything the Worker's outbox holds, in order: its updates and its files."""
    updates: list[wire.TaskUpdate] = []
    files: list[FrameItem] = []

    async def take_updates(texts: list[str]) -> None:
        updates.extend(wire.TaskUpdate.model_validate_json(text) for text in texts)

    async def take_file(item: FrameItem) -> None:
        files.append(item)

    await agent.outbox.flush(take_updates, take_file)
    return updates, files


@pytest.fixture
def agent(blender_install: BlenderInstall, tmp_path: Path) -> Iterator[WorkerAgent]:
    settings = WorkerSettings(data_dir=tmp_path / "w", manager="http://127.0.0.1:9", name="w1")
    worker = WorkerAgent(settings, blender_install)
    for command in (Writes(), WritesAFrameOfAnotherTask(), Breaks()):
        worker.commands[command.name] = command
    yield worker
    asyncio.run(worker.api.close())
    worker.outbox.close()


def test_what_a_command_reports_goes_into_the_outbox(agent: WorkerAgent) -> None:
    updates, files = _run(agent, "writes", [1, 2])
    assert [(f.kind, f.frame, f.filename) for f in files] == [
        ("frame", 1, "f_0001.png"),
        ("frame", 2, "f_0002.png"),
        ("artifact", 0, "cache/data.bin"),  # its path in the job's folder
        ("artifact", 0, "summary.txt"),  # outside it: its file name
    ]
    assert agent.blobs.path(files[2].sha256).read_bytes() == b"baked"
    assert [u.activity for u in updates if u.activity and "saved" in u.activity] == [
        "frame 1 saved",
        "frame 2 saved",
    ]
    assert any(u.log and "all written" in u.log for u in updates)
    assert (updates[-1].status, updates[-1].progress) == ("completed", 1.0)


def test_a_task_whose_command_is_not_installed_fails_as_the_machines_fault(
    agent: WorkerAgent,
) -> None:
    updates, files = _run(agent, "bake-ocean", [1])
    last = updates[-1]
    assert (last.status, last.error, last.fault) == (
        "failed",
        "This Worker has no command bake-ocean installed.",
        "machine",
    )
    assert files == []


def test_a_frame_not_of_the_task_and_a_commands_own_bug_fail_the_task_saying_why(
    agent: WorkerAgent,
) -> None:
    updates, files = _run(agent, "strays", [1, 2])
    assert (updates[-1].status, updates[-1].error) == (
        "failed",
        "Frame 9 is not one of the frames of task strays task.",
    )
    assert files == []

    updates, _ = _run(agent, "breaks", [1])
    assert (updates[-1].status, updates[-1].error, updates[-1].fault) == (
        "failed",
        "'size'",
        "machine",
    )
    assert any(u.log and "about to break" in u.log for u in updates)


SILENT_BAKE = """
import time

time.sleep(2.5)  # a bake that prints nothing for longer than hung_timeout_s
with open("baked.txt", "w") as out:
    out.write("baked")
FLAMENCO_OUTPUTS.append("baked.txt")
"""


def test_a_silent_script_is_not_stopped_as_hung(
    blender_install: BlenderInstall, demo_scene: Path, tmp_path: Path
) -> None:
    settings = WorkerSettings(
        data_dir=tmp_path / "w", manager="http://127.0.0.1:9", name="w1", hung_timeout_s=0.5
    )
    agent = WorkerAgent(settings, blender_install)
    job_dir = settings.data_dir / "jobs" / "j1" / "files"
    job_dir.mkdir(parents=True)
    shutil.copy(demo_scene, job_dir / "scene.blend")
    (job_dir / "bake.py").write_text(SILENT_BAKE)
    run = TaskRun(
        wire.Assignment(
            task_id="t1",
            job_id="j1",
            job_name="bake",
            name="script bake.py",
            type="blender-script",
            frames=[],
            command={"blend": "scene.blend", "script": "bake.py", "args": [], "frame": None},
            files={},
        )
    )

    async def scenario() -> tuple[list[wire.TaskUpdate], list[FrameItem]]:
        agent.run = run  # as the sync loop sees it: it checks the running task for hangs

        async def watch_for_hangs() -> None:
            # From when the script runs (its progress says so): Blender's start is another
            # matter, watched as for any render.
            while not run.progress.activity.startswith("running bake.py"):
                await asyncio.sleep(0.05)
            while True:
                await agent._stop_if_hung()
                await asyncio.sleep(0.1)

        watching = asyncio.create_task(watch_for_hangs())
        try:
            await agent._run_task(run)
        finally:
            watching.cancel()
            await agent.pool.shutdown()
            await agent.api.close()
        return await _outbox_contents(agent)

    updates, files = asyncio.run(scenario())
    agent.outbox.close()
    assert not run.hung
    assert (updates[-1].status, updates[-1].error) == ("completed", None), updates[-1]
    assert [(f.kind, f.filename) for f in files] == [("artifact", "baked.txt")]
