"""The `blender-render` job type: frames of a .blend, one task per chunk of frames (or one
frame split into tiles), and an optional preview video at the end."""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from flamenco.core.chunking import DEFAULT_TASK_SECONDS
from flamenco.core.compiler import (
    DEFAULT_OUTPUT_PATTERN,
    FROM_SCENE,
    SCENE_FILE,
    BlenderVersion,
    Flag,
    FrameRange,
    JobCompileError,
    OutputFormat,
    OutputPattern,
    TaskSpec,
    WorkerTag,
    job_path,
    one_of,
    read_int,
    whole_number,
)
from flamenco.core.frames import (
    chunk_frames,
    format_frame_range,
    parse_frame_range,
    quote_for_message,
)
from flamenco.core.matching import RENDER_DEVICES, Requirements
from flamenco.core.tiles import MAX_TILES, TileError, check_tile_count

RENDER_TASK_TYPE = "blender-render"
"""The Worker command of render tasks (the task type "blender" before this name)."""
PREVIEW_TASK_TYPE = "ffmpeg"
AUTO_CHUNK = "auto"
# Chunks larger than the frame limit can never be filled, so this only stops absurd input.
_MAX_CHUNK_SIZE = 100_000
# Options whose tasks are tied to the render tasks as first planned, which re-chunking changes.
_FIXED_PLAN_OPTIONS = {"preview_video": "a preview video", "tiles": "tiles"}


def _read_chunk_size(value: Any) -> int | str:
    return value if value == AUTO_CHUNK else read_int("chunk_size", value, 1, _MAX_CHUNK_SIZE)


def _read_task_seconds(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise JobCompileError(
            "Setting 'task_seconds' must be a number of seconds above 0, "
            f"got {quote_for_message(value)}."
        )
    return float(value)


def _read_tiles(value: Any) -> int:
    """From 2 (0, the default, is whole frames). How many tiles the frame's pixels allow only
    Blender knows: the Worker checks that (core/tiles.py), the CLI too where it can."""
    tiles = read_int("tiles", value, 0, MAX_TILES)
    try:
        check_tile_count(tiles, MAX_TILES, 1)
    except TileError as exc:
        raise JobCompileError(str(exc)) from None
    return tiles


class BlenderRenderSettings(BaseModel):
    """Settings of a render job; every one but blend and frames has a default."""

    model_config = ConfigDict(extra="forbid")

    blend: job_path(".blend") = Field(  # type: ignore[valid-type]
        description="The .blend file to render.", json_schema_extra=SCENE_FILE
    )
    frames: FrameRange = Field(description="Frames, e.g. 1-10,15,20-24 or 1-100x5.")
    chunk_size: Annotated[int | Literal["auto"], BeforeValidator(_read_chunk_size)] = Field(
        1,
        description="Frames per task, or 'auto': tasks re-sized as frames render so that each "
        "takes about task_seconds.",
    )
    task_seconds: Annotated[float | None, BeforeValidator(_read_task_seconds)] = Field(
        None,
        description=f"With chunk_size 'auto', the seconds each task should take "
        f"[{DEFAULT_TASK_SECONDS:g}].",
    )
    output_pattern: OutputPattern = Field(
        DEFAULT_OUTPUT_PATTERN, description="Frame file name; '#' for the frame number."
    )
    output_format: OutputFormat = Field(
        FROM_SCENE, description="Blender's file format name, or SCENE for the file's own."
    )
    render_device: one_of(RENDER_DEVICES) = Field(  # type: ignore[valid-type]
        "CPU", description="CPU, GPU (any), or a GPU backend."
    )
    worker_tag: WorkerTag = Field(None, description="Only Workers with this tag.")
    min_blender_version: BlenderVersion = Field(None, description="Minimum Blender version.")
    preview_video: Flag = Field(False, description="Also make preview.mp4 of all frames.")
    fps: whole_number(1, 240) = Field(24, description="The preview video's frame rate.")  # type: ignore[valid-type]
    persistent_data: Flag = Field(
        True, description="Let Cycles keep BVH and images between a job's frames on a Worker."
    )
    scripts: Flag = Field(True, description="Run the file's own Python (drivers, text blocks).")
    check_blank: Flag = Field(False, description="Fail a frame whose pixels are all one value.")
    tiles: Annotated[int, Field(ge=0, le=MAX_TILES), BeforeValidator(_read_tiles)] = Field(
        0, description="Render the one frame as this many regions, joined by the Server."
    )

    @model_validator(mode="after")
    def _fits_together(self) -> "BlenderRenderSettings":
        read_chunk_auto({key: getattr(self, key) for key in self.model_fields_set})
        if self.tiles and len(frames := parse_frame_range(self.frames)) != 1:
            raise JobCompileError(
                f"--tiles splits one frame over many machines, but the job has {len(frames)} "
                "frames; give --frames a single frame."
            )
        return self


def read_chunk_auto(settings: Mapping[str, Any]) -> float | None:
    """For `chunk_size` "auto", the seconds each task should take ('task_seconds', default
    60); None for a fixed chunk size. Public: the Server re-chunks the jobs it names."""
    if settings.get("chunk_size") != AUTO_CHUNK:
        if "task_seconds" in settings:
            raise JobCompileError("Setting 'task_seconds' needs chunk_size 'auto'.")
        return None
    seconds = _read_task_seconds(settings.get("task_seconds", DEFAULT_TASK_SECONDS))
    for key, what in _FIXED_PLAN_OPTIONS.items():
        if settings.get(key):
            raise JobCompileError(
                f"Chunk size 'auto' cannot be combined with {what}: it re-plans the render "
                "tasks that these depend on; give a fixed chunk size."
            )
    return seconds


class BlenderRender:
    name = "blender-render"
    label = "Render frames"
    description = (
        "Render frames of a .blend file, a chunk of frames a task (or one frame split into "
        "tiles), with an optional preview video."
    )
    Settings = BlenderRenderSettings

    def compile(self, settings: BlenderRenderSettings) -> list[TaskSpec]:
        """One render task per chunk of frames, plus an optional 'ffmpeg' preview video."""
        frames = parse_frame_range(settings.frames)
        # "auto": one frame per task until frames have rendered, then re-planned by time.
        chunk_size = 1 if settings.chunk_size == AUTO_CHUNK else int(settings.chunk_size)
        output = {
            "output_pattern": settings.output_pattern,
            "output_format": settings.output_format,
        }
        device = settings.render_device
        needs = Requirements(settings.worker_tag, settings.min_blender_version, device)
        whole = _render_task(
            settings.blend, frames, output, device, settings.persistent_data, settings.scripts
        )
        if settings.tiles:
            # The Server checks the joined frame for blankness: a tile is mostly unrendered.
            tasks = _tile_tasks(replace(whole, requirements=needs), frames[0], settings.tiles)
        else:
            check_blank = {"check_blank": True} if settings.check_blank else {}
            # TaskSpec made directly, not by replace(): 100,000 of them in a studio's job.
            tasks = [
                TaskSpec(
                    name=render_task_name(chunk),
                    type=whole.type,
                    frames=tuple(chunk),
                    # check_blank absent when off, as in jobs from before the setting
                    command={**whole.command, "frames": chunk, **check_blank},
                    requirements=needs,
                )
                for chunk in chunk_frames(frames, chunk_size)
            ]
        if settings.preview_video:
            preview = _preview_task(frames, output, settings.fps, len(tasks))
            tasks.append(replace(preview, requirements=Requirements(tag=needs.tag)))
        return tasks


JOB_TYPE = BlenderRender()


def _render_task(
    blend: str,
    chunk: list[int],
    output: dict[str, str],
    device: str,
    persistent_data: bool,
    scripts: bool,
) -> TaskSpec:
    """The Blender task rendering one chunk of frames."""
    command = {
        "blend": blend,
        "frames": chunk,
        **output,
        "render_device": device,
        "persistent_data": persistent_data,
        "scripts": scripts,
    }
    return TaskSpec(
        name=render_task_name(chunk), type=RENDER_TASK_TYPE, frames=tuple(chunk), command=command
    )


def _tile_tasks(whole: TaskSpec, frame: int, tiles: int) -> list[TaskSpec]:
    """One task per tile of `frame`; the Worker turns index and count into the tile's region
    (flamenco.core.tiles) from the resolution its Blender reports."""
    return [
        replace(
            whole,
            name=f"render {frame} tile {index + 1}/{tiles}",
            command={**whole.command, "tile": {"index": index, "count": tiles}},
        )
        for index in range(tiles)
    ]


def render_task_name(frames: Iterable[int]) -> str:
    listed = list(frames)
    if len(listed) == 1:  # the common chunk, named without the range formatter
        return f"render {listed[0]}"
    return f"render {format_frame_range(listed)}"


@dataclass(frozen=True)
class RenderChunk:
    """A render task's frames as re-planned (`--chunk auto`): its name and command."""

    name: str
    frames: tuple[int, ...]
    command: dict[str, Any]


def rechunked_render(command: Mapping[str, Any], frames: tuple[int, ...]) -> RenderChunk:
    """The render task of `frames`, with the rest of its command from one of its job's."""
    return RenderChunk(render_task_name(frames), frames, {**command, "frames": list(frames)})


def _preview_task(frames: list[int], output: dict[str, str], fps: int, renders: int) -> TaskSpec:
    """The ffmpeg task that turns all rendered frames into a video, after every render task."""
    return TaskSpec(
        name="preview video",
        type=PREVIEW_TASK_TYPE,
        frames=tuple(frames),
        command={"frames": list(frames), **output, "fps": fps},
        depends_on=tuple(range(renders)),
        renders_frames=False,
    )
