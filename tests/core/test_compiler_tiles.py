"""The compiler's tile tasks: one per tile of the one frame, each naming its tile; bad
--tiles input refused in one sentence."""

from typing import Any

import pytest

from flamenco.core.compiler import JobCompileError, compile_job
from flamenco.core.job_types.blender_render import JOB_TYPE as BLENDER_RENDER

BASE = {"blend": "scene.blend", "frames": "12"}


def test_tiles_make_one_task_per_tile_of_the_frame() -> None:
    tasks = compile_job(BLENDER_RENDER, {**BASE, "tiles": 3, "check_blank": True})
    assert [t.name for t in tasks] == [
        "render 12 tile 1/3",
        "render 12 tile 2/3",
        "render 12 tile 3/3",
    ]
    assert [t.command["tile"] for t in tasks] == [{"index": i, "count": 3} for i in range(3)]
    assert all(t.frames == (12,) and t.command["frames"] == [12] for t in tasks)
    assert all(t.type == "blender-render" and not t.depends_on for t in tasks)
    # a tile is mostly unrendered: the Server checks the joined frame for blankness instead
    assert all("check_blank" not in t.command for t in tasks)


def test_a_preview_video_of_a_tiled_frame_waits_for_every_tile() -> None:
    tasks = compile_job(BLENDER_RENDER, {**BASE, "tiles": 2, "preview_video": True})
    assert tasks[-1].type == "ffmpeg" and tasks[-1].depends_on == (0, 1)


def test_without_tiles_no_task_names_a_tile() -> None:
    tasks = compile_job(BLENDER_RENDER, {"blend": "scene.blend", "frames": "1-3"})
    assert all("tile" not in t.command for t in tasks)


@pytest.mark.parametrize(
    ("settings", "sentence"),
    [
        ({"tiles": 1}, "--tiles must be at least 2, got 1."),
        ({"tiles": 0}, "--tiles must be at least 2, got 0."),
        ({"tiles": -3}, "Setting 'tiles' must be from 0 to"),
        ({"tiles": "4"}, "Setting 'tiles' must be a whole number, got '4'."),
        (
            {"tiles": 4, "frames": "1-2"},
            "--tiles splits one frame over many machines, but the job has 2 frames; "
            "give --frames a single frame.",
        ),
        ({"tiles": 4, "chunk_size": "auto"}, "Chunk size 'auto' cannot be combined with tiles"),
    ],
)
def test_bad_tiles_get_one_sentence(settings: dict[str, Any], sentence: str) -> None:
    with pytest.raises(JobCompileError) as err:
        compile_job(BLENDER_RENDER, {**BASE, **settings})
    assert str(err.value).startswith(sentence)
