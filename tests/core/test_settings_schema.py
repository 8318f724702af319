"""core/settings_schema.py, table-driven: the built-in job types' schemas read as settings, and
`--set` texts read as each setting's kind, or refused in one sentence."""

from pathlib import PurePosixPath
from typing import Any

import pytest

from flamenco.core.job_types.blender_render import JOB_TYPE as BLENDER_RENDER
from flamenco.core.job_types.blender_script import JOB_TYPE as BLENDER_SCRIPT
from flamenco.core.settings_schema import (
    SettingTextError,
    local_job_path,
    parse_assignment,
    parse_setting,
    parse_settings,
    setting_fields,
)

RENDER = {f.name: f for f in setting_fields(BLENDER_RENDER.Settings.model_json_schema())}
SCRIPT = {f.name: f for f in setting_fields(BLENDER_SCRIPT.Settings.model_json_schema())}


@pytest.mark.parametrize(
    ("fields", "name", "summary", "required", "default"),
    [
        (RENDER, "blend", "text, the job's .blend", True, None),
        (RENDER, "frames", "text", True, None),
        (RENDER, "chunk_size", "whole number or auto", False, 1),
        (RENDER, "fps", "whole number from 1 to 240", False, 24),
        (RENDER, "preview_video", "true/false", False, False),
        (RENDER, "task_seconds", "number", False, None),
        (RENDER, "worker_tag", "text", False, None),
        (RENDER, "tiles", "whole number from 0 to 4294967296", False, 0),
        (SCRIPT, "script", "text, a local file", True, None),
        (SCRIPT, "args", "list", False, None),
        (SCRIPT, "frame", "whole number from 0 to 1048574", False, None),
    ],
)
def test_fields_from_the_built_in_schemas(
    fields: dict, name: str, summary: str, required: bool, default: Any
) -> None:
    field = fields[name]
    assert (field.summary(), field.required, field.default) == (summary, required, default)


def test_choices_and_order_come_from_the_schema() -> None:
    assert RENDER["render_device"].choices[:3] == ("CPU", "GPU", "OPTIX")
    assert RENDER["output_format"].choices[0] == "SCENE"
    assert list(SCRIPT) == ["blend", "script", "args", "frame", "worker_tag", "min_blender_version"]
    assert RENDER["blend"].description == "The .blend file to render."


@pytest.mark.parametrize(
    ("fields", "name", "text", "value"),
    [
        (RENDER, "chunk_size", "5", 5),
        (RENDER, "chunk_size", "auto", "auto"),
        (RENDER, "fps", " 30", 30),
        (RENDER, "fps", "-3", -3),  # the model says what range; this only reads the number
        (RENDER, "preview_video", "yes", True),
        (RENDER, "preview_video", "False", False),
        (RENDER, "preview_video", "0", False),
        (RENDER, "task_seconds", "2.5", 2.5),
        (RENDER, "task_seconds", "", None),
        (RENDER, "worker_tag", "none", None),
        (RENDER, "output_pattern", "shot_####", "shot_####"),
        (RENDER, "render_device", "OPTIX", "OPTIX"),
        (SCRIPT, "args", "--res 4 'two words'", ["--res", "4", "two words"]),
        (SCRIPT, "args", '["a", "b c"]', ["a", "b c"]),
        (SCRIPT, "args", "", []),
        (SCRIPT, "frame", "12", 12),
        (SCRIPT, "frame", "", None),
    ],
)
def test_texts_read_as_their_kind(fields: dict, name: str, text: str, value: Any) -> None:
    assert parse_setting(fields[name], text) == value


@pytest.mark.parametrize(
    ("fields", "name", "text", "sentence"),
    [
        (
            RENDER,
            "chunk_size",
            "lots",
            "Setting 'chunk_size' takes a whole number or auto, got 'lots'.",
        ),
        (RENDER, "fps", "2.5", "Setting 'fps' takes a whole number, got '2.5'."),
        (
            RENDER,
            "preview_video",
            "maybe",
            "Setting 'preview_video' takes true or false, got 'maybe'.",
        ),
        (RENDER, "task_seconds", "nan", "Setting 'task_seconds' takes a number, got 'nan'."),
        (
            RENDER,
            "render_device",
            "TPU",
            "Setting 'render_device' takes one of CPU, GPU, OPTIX, "
            "CUDA, HIP, ONEAPI, METAL, got 'TPU'.",
        ),
        (SCRIPT, "args", '["unclosed"', "Setting 'args' takes a list, got '[\"unclosed\"'."),
        (SCRIPT, "args", '"open', "Setting 'args' takes a list, got '\"open'."),
        (SCRIPT, "frame", "x", "Setting 'frame' takes a whole number, got 'x'."),
    ],
)
def test_bad_texts_get_one_sentence(fields: dict, name: str, text: str, sentence: str) -> None:
    with pytest.raises(SettingTextError) as caught:
        parse_setting(fields[name], text)
    assert str(caught.value) == sentence


@pytest.mark.parametrize(
    ("assignments", "outcome"),
    [
        (
            ["script=bake.py", "args=-n 3", "frame=7"],
            {"script": "bake.py", "args": ["-n", "3"], "frame": 7},
        ),
        (["args=a=b"], {"args": ["a=b"]}),
        (
            ["scrip=bake.py"],
            "Job type 'blender-script' has no setting 'scrip'; its settings: "
            "blend, script, args, frame, worker_tag, min_blender_version.",
        ),
        (["script"], "--set takes key=value, got 'script'."),
        (["=x"], "--set takes key=value, got '=x'."),
    ],
)
def test_assignments(assignments: list[str], outcome: dict | str) -> None:
    fields = list(SCRIPT.values())
    if isinstance(outcome, str):
        with pytest.raises(SettingTextError) as caught:
            parse_settings(fields, assignments, "blender-script")
        assert str(caught.value) == outcome
    else:
        assert parse_settings(fields, assignments, "blender-script") == outcome


def test_an_assignment_keeps_equals_in_its_value() -> None:
    assert parse_assignment(" key =a=b") == ("key", "a=b")


@pytest.mark.parametrize(
    ("file", "blend", "job_path"),
    [
        ("/p/scripts/bake.py", "shot.blend", "scripts/bake.py"),
        ("/p/bake.py", "shot.blend", "bake.py"),
        ("/p/bake.py", "shots/shot.blend", "shots/bake.py"),
        ("/elsewhere/bake.py", "shot.blend", "_submitted/script/bake.py"),
        ("/pp/bake.py", "shot.blend", "_submitted/script/bake.py"),  # not inside /p
    ],
)
def test_where_a_local_file_goes_among_the_jobs_files(file: str, blend: str, job_path: str) -> None:
    assert local_job_path("script", PurePosixPath(file), PurePosixPath("/p"), blend) == job_path
