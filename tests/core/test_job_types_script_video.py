"""The blender-script and ffmpeg job types, table-driven: their tasks, and their settings'
refusals as one sentence."""

from typing import Any

import pytest

from flamenco.core.compiler import JobCompileError, JobType, TaskSpec, compile_job
from flamenco.core.job_types.blender_script import JOB_TYPE as SCRIPT
from flamenco.core.job_types.ffmpeg import JOB_TYPE as VIDEO
from flamenco.core.matching import Requirements

BAKE = {"blend": "s.blend", "script": "scripts/bake.py"}


def _script(args: list[str], frame: int | None, **needs: Any) -> TaskSpec:
    command = {"blend": "s.blend", "script": "scripts/bake.py", "args": args, "frame": frame}
    return TaskSpec(
        "script bake.py", "blender-script", (), command, (), Requirements(**needs), False
    )


def _video(frames: tuple[int, ...], fps: int, tag: str | None = None) -> TaskSpec:
    command = {"frames": list(frames), "fps": fps}
    return TaskSpec("video", "ffmpeg", frames, command, (), Requirements(tag=tag), False)


@pytest.mark.parametrize(
    ("job_type", "settings", "tasks"),
    [
        (SCRIPT, BAKE, [_script([], None)]),
        (SCRIPT, {**BAKE, "args": ["-n", "3"], "frame": 12}, [_script(["-n", "3"], 12)]),
        (SCRIPT, {**BAKE, "frame": None}, [_script([], None)]),
        (
            SCRIPT,
            {**BAKE, "worker_tag": "sim", "min_blender_version": "4.2"},
            [_script([], None, tag="sim", min_blender="4.2")],
        ),
        (VIDEO, {}, [_video((), 24)]),
        (VIDEO, {"frames": "1-3", "fps": 30}, [_video((1, 2, 3), 30)]),
        (VIDEO, {"worker_tag": "ffmpeg-box"}, [_video((), 24, "ffmpeg-box")]),
    ],
)
def test_tasks(job_type: JobType, settings: dict[str, Any], tasks: list[TaskSpec]) -> None:
    assert compile_job(job_type, settings) == tasks


@pytest.mark.parametrize(
    ("job_type", "settings", "sentence"),
    [
        (SCRIPT, {"blend": "s.blend"}, "Setting 'script' is required."),
        (SCRIPT, {**BAKE, "script": "bake.txt"}, "Setting 'script' must name a .py file"),
        (SCRIPT, {**BAKE, "script": "../bake.py"}, "relative path inside the job's files"),
        (SCRIPT, {**BAKE, "blend": "x.py"}, "Setting 'blend' must name a .blend file"),
        (SCRIPT, {**BAKE, "frame": "3"}, "Setting 'frame' must be a whole number, got '3'."),
        (SCRIPT, {**BAKE, "frame": -1}, "Setting 'frame' must be from 0 to 1048574, got -1."),
        (SCRIPT, {**BAKE, "args": "-n 3"}, "Setting 'args': Input should be a valid list"),
        (SCRIPT, {**BAKE, "args": [3]}, "Setting 'args.0': Input should be a valid string"),
        (SCRIPT, {**BAKE, "frames": "1"}, "Unknown setting 'frames' for job type"),
        (VIDEO, {"fps": 0}, "Setting 'fps' must be from 1 to 240, got 0."),
        (VIDEO, {"frames": "2-1"}, "Frame range '2-1' is invalid"),
        (VIDEO, {"blend": "s.blend"}, "Unknown setting 'blend' for job type 'ffmpeg'."),
    ],
)
def test_refusals(job_type: JobType, settings: dict[str, Any], sentence: str) -> None:
    with pytest.raises(JobCompileError) as caught:
        compile_job(job_type, settings)
    message = str(caught.value)
    assert sentence in message and message.endswith(".") and "\n" not in message
