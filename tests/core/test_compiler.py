"""Table-driven tests for flamenco.core.compiler."""

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import pytest
from pydantic import BaseModel

from flamenco.core.compiler import (
    JobCompileError,
    TaskSpec,
    compile_job,
    frame_extension,
    output_format_label,
)
from flamenco.core.job_types.blender_render import JOB_TYPE as BLENDER_RENDER
from flamenco.core.matching import Requirements

BASE: dict[str, Any] = {"blend": "shots/010.blend", "frames": "1-3"}


def _with(**changes: Any) -> dict[str, Any]:
    """BASE settings with some keys changed; a value of ... removes the key."""
    merged = {**BASE, **changes}
    return {key: value for key, value in merged.items() if value is not ...}


def _render(frames: list[int], **command: Any) -> TaskSpec:
    """Expected render task for a chunk, with default settings unless overridden."""
    defaults = {
        "blend": "shots/010.blend",
        "output_pattern": "frame_######",
        "output_format": "SCENE",
        "render_device": "CPU",
        "persistent_data": True,
        "scripts": True,
    }
    full = {**defaults, **command}
    return TaskSpec(
        name=f"render {_name(frames)}",
        type="blender-render",
        frames=tuple(frames),
        command={
            "blend": full["blend"],
            "frames": frames,
            "output_pattern": full["output_pattern"],
            "output_format": full["output_format"],
            "render_device": full["render_device"],
            "persistent_data": full["persistent_data"],
            "scripts": full["scripts"],
        },
        requirements=Requirements(device=full["render_device"]),
    )


def _blank_checked(task: TaskSpec) -> TaskSpec:
    return replace(task, command={**task.command, "check_blank": True})


def _name(frames: list[int]) -> str:
    return "-".join(str(f) for f in (frames[0], frames[-1])) if len(frames) > 1 else str(frames[0])


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        (BASE, [_render([1]), _render([2]), _render([3])]),
        (_with(chunk_size=2), [_render([1, 2]), _render([3])]),
        (_with(chunk_size=3), [_render([1, 2, 3])]),
        (_with(chunk_size=50), [_render([1, 2, 3])]),
        (_with(frames="7"), [_render([7])]),
        (_with(frames="3,1,2", chunk_size=3), [_render([1, 2, 3])]),
        (_with(blend="a.blend", frames="5"), [_render([5], blend="a.blend")]),
        (
            _with(blend="dir\\b.blend", frames="5"),
            [_render([5], blend="dir\\b.blend")],
        ),
        (_with(frames="1", output_format="OPEN_EXR"), [_render([1], output_format="OPEN_EXR")]),
        (_with(frames="1", output_format="JPEG"), [_render([1], output_format="JPEG")]),
        (_with(frames="1", output_format="TIFF"), [_render([1], output_format="TIFF")]),
        # The file's own output settings unless a format is named: absent, empty or SCENE.
        (_with(frames="1", output_format="SCENE"), [_render([1], output_format="SCENE")]),
        (_with(frames="1", output_format=""), [_render([1], output_format="SCENE")]),
        (_with(frames="1", output_format=None), [_render([1], output_format="SCENE")]),
        (_with(frames="1", output_format="PNG"), [_render([1], output_format="PNG")]),
        (
            _with(frames="1", output_format="OPEN_EXR_MULTILAYER"),
            [_render([1], output_format="OPEN_EXR_MULTILAYER")],
        ),
        (_with(frames="1", output_format="WEBP"), [_render([1], output_format="WEBP")]),
        (_with(frames="1", output_format="TARGA_RAW"), [_render([1], output_format="TARGA_RAW")]),
        (_with(frames="1", render_device="OPTIX"), [_render([1], render_device="OPTIX")]),
        (_with(frames="1", render_device="METAL"), [_render([1], render_device="METAL")]),
        (_with(frames="1", output_pattern="f_#"), [_render([1], output_pattern="f_#")]),
        (_with(frames="1", output_pattern="###.x"), [_render([1], output_pattern="###.x")]),
        (_with(frames="1", preview_video=False), [_render([1])]),
        # Cycles persistent data between a job's frames: on unless the job opts out.
        (_with(frames="1", persistent_data=True), [_render([1])]),
        (_with(frames="1", persistent_data=False), [_render([1], persistent_data=False)]),
        # The file's own scripts run unless the job turns them off (--no-scripts).
        (_with(frames="1", scripts=True), [_render([1])]),
        (_with(frames="1", scripts=False), [_render([1], scripts=False)]),
        # Blank frames fail only when the job asks (--check-blank).
        (_with(frames="1", check_blank=False), [_render([1])]),
        (_with(frames="1", check_blank=True), [_blank_checked(_render([1]))]),
        (_with(frames="1", fps=30), [_render([1])]),
    ],
)
def test_blender_render(settings: dict[str, Any], expected: list[TaskSpec]) -> None:
    assert compile_job(BLENDER_RENDER, settings) == expected


def test_blender_render_chunks_across_gaps() -> None:
    tasks = compile_job(BLENDER_RENDER, _with(frames="1-10,15,20-24", chunk_size=3))
    assert [task.name for task in tasks] == [
        "render 1-3",
        "render 4-6",
        "render 7-9",
        "render 10,15,20",
        "render 21-23",
        "render 24",
    ]
    assert [list(task.frames) for task in tasks] == [
        [1, 2, 3],
        [4, 5, 6],
        [7, 8, 9],
        [10, 15, 20],
        [21, 22, 23],
        [24],
    ]
    assert all(task.command["frames"] == list(task.frames) for task in tasks)


@pytest.mark.parametrize(
    ("settings", "fps", "renders"),
    [
        (_with(preview_video=True), 24, 3),
        (_with(preview_video=True, fps=30), 30, 3),
        (_with(preview_video=True, chunk_size=2), 24, 2),
        (_with(preview_video=True, fps=1), 1, 3),
        (_with(preview_video=True, fps=240, chunk_size=10), 240, 1),
    ],
)
def test_blender_render_preview_video(settings: dict[str, Any], fps: int, renders: int) -> None:
    tasks = compile_job(BLENDER_RENDER, settings)
    assert len(tasks) == renders + 1
    assert tasks[-1] == TaskSpec(
        name="preview video",
        type="ffmpeg",
        frames=(1, 2, 3),
        command={
            "frames": [1, 2, 3],
            "output_pattern": "frame_######",
            "output_format": "SCENE",
            "fps": fps,
        },
        depends_on=tuple(range(renders)),
        renders_frames=False,
    )
    assert all(task.type == "blender-render" for task in tasks[:-1])


@pytest.mark.parametrize(
    ("job_type", "settings", "fragment"),
    [
        ("blender-render", ["blend"], "Job settings must be a mapping of names to values"),
        # Unknown keys.
        ("blender-render", _with(chunksize=2), "Unknown setting 'chunksize'"),
        ("blender-render", _with(b=1, a=2), "Unknown settings 'a', 'b'"),
        # blend
        ("blender-render", _with(blend=...), "Setting 'blend' is required."),
        ("blender-render", _with(blend=None), "Setting 'blend' is required."),
        ("blender-render", _with(blend=3), "Setting 'blend' must be text, got int 3."),
        ("blender-render", _with(blend="scene.txt"), "must name a .blend file, got 'scene.txt'."),
        ("blender-render", _with(blend=""), "must name a .blend file, got ''."),
        ("blender-render", _with(blend="dir/.blend"), "must name a .blend file"),
        ("blender-render", _with(blend="/abs/a.blend"), "relative path inside the job's files"),
        ("blender-render", _with(blend="\\abs\\a.blend"), "got '\\\\abs\\\\a.blend'."),
        ("blender-render", _with(blend="C:/a.blend"), "got 'C:/a.blend'."),
        ("blender-render", _with(blend="../a.blend"), "got '../a.blend'."),
        ("blender-render", _with(blend="x\\..\\a.blend"), "relative path inside the job's files"),
        # frames: the frame parser's sentence passes through.
        ("blender-render", _with(frames=...), "Setting 'frames' is required."),
        ("blender-render", _with(frames=5), "Setting 'frames' must be text, got int 5."),
        ("blender-render", _with(frames="1-x"), "Frame range '1-x' is invalid: 'x' is not a"),
        ("blender-render", _with(frames="10-1"), "Frame range '10-1' is invalid"),
        ("blender-render", _with(frames=""), "Frame range '' is empty."),
        ("blender-render", _with(frames="0-999999"), "more than 100000 frames"),
        # chunk_size
        ("blender-render", _with(chunk_size="abc"), "'chunk_size' must be a whole number, got"),
        ("blender-render", _with(chunk_size="3"), "'chunk_size' must be a whole number, got '3'."),
        ("blender-render", _with(chunk_size=2.5), "'chunk_size' must be a whole number, got 2.5."),
        ("blender-render", _with(chunk_size=True), "'chunk_size' must be a whole number"),
        ("blender-render", _with(chunk_size=0), "'chunk_size' must be from 1 to 100000, got 0."),
        ("blender-render", _with(chunk_size=-1), "got -1."),
        # output_format / render_device
        (
            "blender-render",
            _with(output_format="GIF"),
            "must be one of SCENE, OPEN_EXR_MULTILAYER, OPEN_EXR, PNG, JPEG, TIFF, WEBP, BMP, "
            "CINEON, DPX, IRIS, JPEG2000, HDR, TARGA, TARGA_RAW, got 'GIF'.",
        ),
        # A video cannot be rendered frame by frame on many machines.
        ("blender-render", _with(output_format="FFMPEG"), "got 'FFMPEG'."),
        ("blender-render", _with(output_format="png"), "got 'png'."),
        ("blender-render", _with(output_format=1), "'output_format' must be text"),
        ("blender-render", _with(render_device="TPU"), "'render_device' must be one of CPU,"),
        ("blender-render", _with(render_device="cuda"), "got 'cuda'."),
        ("blender-render", _with(persistent_data="no"), "'persistent_data' must be true or"),
        ("blender-render", _with(scripts="off"), "'scripts' must be true or false"),
        ("blender-render", _with(check_blank="yes"), "'check_blank' must be true or false"),
        # output_pattern
        ("blender-render", _with(output_pattern="frame"), "must contain '#'"),
        ("blender-render", _with(output_pattern=""), "got ''."),
        ("blender-render", _with(output_pattern="a/##"), "got 'a/##'."),
        ("blender-render", _with(output_pattern="a\\##"), "plain file name"),
        ("blender-render", _with(output_pattern="..##"), "got '..##'."),
        ("blender-render", _with(output_pattern="C:##"), "got 'C:##'."),
        ("blender-render", _with(output_pattern="a\n##"), "got 'a\\n##'."),
        ("blender-render", _with(output_pattern="x" * 199 + "##"), "at most 200 bytes"),
        ("blender-render", _with(output_pattern="é" * 99 + "###"), "at most 200 bytes"),
        ("blender-render", _with(output_pattern="a?##"), "got 'a?##'."),
        ("blender-render", _with(output_pattern="##."), "got '##.'."),
        ("blender-render", _with(output_pattern=".##"), "got '.##'."),
        # preview_video / fps
        ("blender-render", _with(preview_video="yes"), "must be true or false, got 'yes'."),
        ("blender-render", _with(preview_video=1), "must be true or false, got 1."),
        ("blender-render", _with(fps=0), "'fps' must be from 1 to 240, got 0."),
        ("blender-render", _with(fps=241), "got 241."),
        ("blender-render", _with(fps="24"), "'fps' must be a whole number, got '24'."),
        ("blender-render", _with(preview_video=True, fps=None), "must be a whole number"),
    ],
)
def test_compile_errors(job_type: str, settings: Mapping[str, Any], fragment: str) -> None:
    assert job_type == BLENDER_RENDER.name
    with pytest.raises(JobCompileError) as caught:
        compile_job(BLENDER_RENDER, settings)
    message = str(caught.value)
    assert fragment in message
    assert message.endswith(".")
    assert "\n" not in message


class _EchoSettings(BaseModel):
    say: str
    times: int = 1


class _Echo:
    """A job type of one's own: anything with the JobType interface compiles."""

    name = "echo-test"
    label = "Echo"
    description = "Says it."
    Settings = _EchoSettings

    def compile(self, settings: _EchoSettings) -> list[TaskSpec]:
        return [TaskSpec("echo", "echo", (), {"say": settings.say * settings.times})]


@pytest.mark.parametrize(
    ("settings", "outcome"),
    [
        ({"say": "hi"}, [TaskSpec("echo", "echo", (), {"say": "hi"})]),
        ({"say": "hi", "times": 2}, [TaskSpec("echo", "echo", (), {"say": "hihi"})]),
        # Pydantic's own refusals, as one sentence naming the setting.
        ({}, "Setting 'say' is required."),
        (
            {"say": "hi", "times": "many"},
            "Setting 'times': Input should be a valid integer, unable to parse string as an "
            "integer, got 'many'.",
        ),
        ({"say": "hi", "loud": True}, "Unknown setting 'loud' for job type 'echo-test'."),
    ],
)
def test_a_job_type_of_ones_own_compiles(
    settings: dict[str, Any], outcome: list[TaskSpec] | str
) -> None:
    if isinstance(outcome, str):
        with pytest.raises(JobCompileError) as caught:
            compile_job(_Echo(), settings)
        assert str(caught.value) == outcome
    else:
        assert compile_job(_Echo(), settings) == outcome


def test_task_spec_is_frozen() -> None:
    task = compile_job(BLENDER_RENDER, BASE)[0]
    with pytest.raises(AttributeError):
        task.name = "other"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({}, Requirements()),
        ({"worker_tag": "gpu-room"}, Requirements(tag="gpu-room")),
        ({"min_blender_version": "4.2"}, Requirements(min_blender="4.2")),
        ({"render_device": "CUDA", "worker_tag": "a"}, Requirements(tag="a", device="CUDA")),
    ],
)
def test_requirements_travel_with_every_render_task(
    changes: dict[str, Any], expected: Requirements
) -> None:
    tasks = compile_job(BLENDER_RENDER, _with(**changes))
    assert {task.requirements for task in tasks} == {expected}


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"worker_tag": "no spaces"}, "Setting 'worker_tag' must be letters"),
        ({"worker_tag": 5}, "Setting 'worker_tag' must be letters"),
        ({"min_blender_version": "five"}, "is not a Blender version"),
        ({"min_blender_version": "4.2.1.7"}, "is not a Blender version"),
    ],
)
def test_bad_requirements_are_refused(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(JobCompileError, match=message):
        compile_job(BLENDER_RENDER, _with(**changes))


@pytest.mark.parametrize(
    ("settings", "frame_names", "label"),
    [
        ({"output_format": "OPEN_EXR_MULTILAYER"}, [], "OPEN_EXR_MULTILAYER"),
        ({"output_format": "PNG"}, ["frame_000001.png"], "PNG"),
        ({}, [], "from the scene"),
        ({"output_format": "SCENE"}, ["f_01.exr", "f_02.EXR"], "from the scene (.exr)"),
        ({"output_format": ""}, ["a.tif"], "from the scene (.tif)"),
        # Requeued after the file's output changed: both kinds of frame are the job's.
        ({}, ["f_1.png", "f_2.exr", "f_3.exr"], "from the scene (.exr, .png)"),
    ],
)
def test_output_format_label(settings: dict[str, Any], frame_names: list[str], label: str) -> None:
    assert output_format_label(settings, map(frame_extension, frame_names)) == label
