"""Job compilation: turn a job type and its settings into the list of tasks to run.

Compilers are pure functions registered in JOB_TYPES, so a new job type plugs in by
registering one function; the Server stores whatever TaskSpecs come back.
"""

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import PurePosixPath
from typing import Any

from flamenco.core.chunking import DEFAULT_TASK_SECONDS
from flamenco.core.frames import (
    FrameRangeError,
    chunk_frames,
    format_frame_range,
    parse_frame_range,
    quote_for_message,
)
from flamenco.core.matching import RENDER_DEVICES, TAG_PATTERN, Requirements, parse_version
from flamenco.core.names import MAX_LABEL_BYTES, UnsafePath, check_file_name
from flamenco.core.tiles import MAX_TILES, TileError, check_tile_count


@dataclass(frozen=True)
class TaskSpec:
    """One task to create; depends_on holds indexes of other TaskSpecs in the same list."""

    name: str
    type: str
    frames: tuple[int, ...]
    command: dict[str, Any]
    depends_on: tuple[int, ...] = ()
    requirements: Requirements = field(default_factory=Requirements)


class JobCompileError(ValueError):
    """Job settings cannot be compiled; the message is one sentence for the user."""


JobCompiler = Callable[[Mapping[str, Any]], list[TaskSpec]]

JOB_TYPES: dict[str, JobCompiler] = {}
"""Job type name -> compiler; add to it with register_job_type."""


def register_job_type(name: str) -> Callable[[JobCompiler], JobCompiler]:
    """Decorator that adds a compiler to JOB_TYPES under `name`."""

    def register(compiler: JobCompiler) -> JobCompiler:
        JOB_TYPES[name] = compiler
        return compiler

    return register


def compile_job(job_type: str, settings: Mapping[str, Any]) -> list[TaskSpec]:
    """Compile settings for `job_type` into tasks, raising JobCompileError on bad input."""
    compiler = JOB_TYPES.get(job_type)
    if compiler is None:
        known = ", ".join(sorted(JOB_TYPES))
        raise JobCompileError(
            f"Unknown job type {quote_for_message(job_type)}; known types: {known}."
        )
    if not isinstance(settings, Mapping):
        raise JobCompileError(
            f"Job settings must be a mapping of names to values, got {type(settings).__name__}."
        )
    return compiler(settings)


# --- Setting readers, shared by compilers. Each returns a valid value or raises. ---


def _check_known_keys(job_type: str, settings: Mapping[str, Any], allowed: set[str]) -> None:
    """Refuse unknown keys: a typo like 'chunksize' must not be silently ignored."""
    unknown = sorted(str(key) for key in settings if key not in allowed)
    if unknown:
        names = ", ".join(quote_for_message(key) for key in unknown)
        noun = "setting" if len(unknown) == 1 else "settings"
        raise JobCompileError(f"Unknown {noun} {names} for job type {job_type!r}.")


def _read_str(settings: Mapping[str, Any], key: str, default: str | None = None) -> str:
    """Read a string setting; a None default means the setting is required."""
    value = settings.get(key, default)
    if value is None:
        raise JobCompileError(f"Setting {key!r} is required.")
    if not isinstance(value, str):
        raise JobCompileError(
            f"Setting {key!r} must be text, got {type(value).__name__} {quote_for_message(value)}."
        )
    return value


def _read_int(settings: Mapping[str, Any], key: str, default: int, low: int, high: int) -> int:
    """Read a whole-number setting within [low, high]; bools and numeric strings are refused."""
    value = settings.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise JobCompileError(
            f"Setting {key!r} must be a whole number, got {quote_for_message(value)}."
        )
    if not low <= value <= high:
        raise JobCompileError(f"Setting {key!r} must be from {low} to {high}, got {value}.")
    return value


def _read_bool(settings: Mapping[str, Any], key: str, default: bool) -> bool:
    """Read a true/false setting; truthy strings like 'no' are refused rather than guessed."""
    value = settings.get(key, default)
    if not isinstance(value, bool):
        raise JobCompileError(
            f"Setting {key!r} must be true or false, got {quote_for_message(value)}."
        )
    return value


def _read_choice(
    settings: Mapping[str, Any], key: str, default: str, choices: tuple[str, ...]
) -> str:
    """Read a string setting that must be one of `choices`."""
    value = _read_str(settings, key, default)
    if value not in choices:
        raise JobCompileError(
            f"Setting {key!r} must be one of {', '.join(choices)}, got {quote_for_message(value)}."
        )
    return value


# --- blender-render ---

FROM_SCENE = "SCENE"
"""The output_format that keeps the .blend file's own output settings (the default)."""
# Blender's image_settings.file_format names for still images: what a Worker can render
# frame by frame (FFMPEG, a video, cannot be). Checked here so a typo fails at submit.
OUTPUT_FORMATS = (
    "OPEN_EXR_MULTILAYER",
    "OPEN_EXR",
    "PNG",
    "JPEG",
    "TIFF",
    "WEBP",
    "BMP",
    "CINEON",
    "DPX",
    "IRIS",
    "JPEG2000",
    "HDR",
    "TARGA",
    "TARGA_RAW",
)
DEFAULT_OUTPUT_PATTERN = "frame_######"
_BLENDER_RENDER_KEYS = {
    "blend",
    "frames",
    "chunk_size",
    "output_format",
    "render_device",
    "output_pattern",
    "preview_video",
    "fps",
    "worker_tag",
    "min_blender_version",
    "persistent_data",
    "scripts",
    "check_blank",
    "task_seconds",
    "tiles",
}
# Chunks larger than the frame limit can never be filled, so this only stops absurd input.
_MAX_CHUNK_SIZE = 100_000


def _read_blend_path(settings: Mapping[str, Any]) -> str:
    """Read 'blend': a relative path inside the job's files, so it cannot escape them."""
    blend = _read_str(settings, "blend")
    parts = blend.replace("\\", "/").split("/")
    if blend.startswith(("/", "\\")) or ":" in blend or ".." in parts:
        raise JobCompileError(
            "Setting 'blend' must be a relative path inside the job's files, "
            f"got {quote_for_message(blend)}."
        )
    if not blend.endswith(".blend") or parts[-1] == ".blend":
        raise JobCompileError(
            f"Setting 'blend' must name a .blend file, got {quote_for_message(blend)}."
        )
    return blend


def _read_output_pattern(settings: Mapping[str, Any]) -> str:
    """Read 'output_pattern': a file name stem with '#' frame padding, never a path.

    ':' is refused too, because on Windows 'C:name' would switch drives when joined.
    """
    pattern = _read_str(settings, "output_pattern", DEFAULT_OUTPUT_PATTERN)
    if "#" not in pattern:
        raise JobCompileError(
            f"Setting 'output_pattern' must contain '#' for the frame number, "
            f"got {quote_for_message(pattern)}."
        )
    try:  # the rules the frames' own names are checked with when they arrive
        plain = bool(check_file_name(pattern, "output pattern", MAX_LABEL_BYTES)) and (
            ".." not in pattern
        )
    except UnsafePath:
        plain = False
    if not plain:
        raise JobCompileError(
            f"Setting 'output_pattern' must be a plain file name of at most {MAX_LABEL_BYTES} "
            f"bytes without '/', '\\', '..' or ':', got {quote_for_message(pattern)}."
        )
    return pattern


def read_output_format(settings: Mapping[str, Any]) -> str:
    """Read 'output_format': one of Blender's file format names, or SCENE (also when absent or
    empty) for the file's own output settings. Public: the CLI checks it before uploading."""
    if settings.get("output_format") in (None, ""):
        return FROM_SCENE
    return _read_choice(settings, "output_format", FROM_SCENE, (FROM_SCENE, *OUTPUT_FORMATS))


def output_format_label(settings: Mapping[str, Any], frame_names: Iterable[str]) -> str:
    """What a job renders to, for people: the format it names, or for a job that keeps the
    scene's own output, the extensions of the frames Blender wrote so far (nothing reads the
    .blend file's settings outside Blender)."""
    named = settings.get("output_format")
    if named not in (None, "", FROM_SCENE):
        return str(named)
    extensions = sorted({PurePosixPath(name).suffix.lower() for name in frame_names} - {""})
    return f"from the scene ({', '.join(extensions)})" if extensions else "from the scene"


def _read_frames(settings: Mapping[str, Any]) -> list[int]:
    """Read 'frames', passing the frame parser's user-facing sentence through unchanged."""
    try:
        return parse_frame_range(_read_str(settings, "frames"))
    except FrameRangeError as err:
        raise JobCompileError(str(err)) from err


@register_job_type("blender-render")
def compile_blender_render(settings: Mapping[str, Any]) -> list[TaskSpec]:
    """One 'blender' task per chunk of frames, plus an optional 'ffmpeg' preview video task."""
    _check_known_keys("blender-render", settings, _BLENDER_RENDER_KEYS)
    blend = _read_blend_path(settings)
    frames = _read_frames(settings)
    # "auto": one frame per task until frames have rendered, then re-planned by time.
    chunk_size = (
        1 if read_chunk_auto(settings) else _read_int(settings, "chunk_size", 1, 1, _MAX_CHUNK_SIZE)
    )
    output = {
        "output_pattern": _read_output_pattern(settings),
        "output_format": read_output_format(settings),
    }
    device = _read_choice(settings, "render_device", "CPU", RENDER_DEVICES)
    fps = _read_int(settings, "fps", 24, 1, 240)  # Validated even without a preview video.
    needs = Requirements(_read_tag(settings), _read_min_blender(settings), device)
    # Cycles keeps BVH and images between a job's frames in its warm Blender unless told not to.
    persistent = _read_bool(settings, "persistent_data", True)
    # The file's own Python (drivers, registered text blocks) runs, as on a workstation.
    scripts = _read_bool(settings, "scripts", True)
    # A frame whose pixels are all one value fails its task (flamenco.frame_check).
    check_blank = _read_bool(settings, "check_blank", False)
    tiles = _read_tiles(settings, frames)
    if tiles:
        # The Server checks the joined frame for blankness: a tile is mostly unrendered.
        tile_tasks = _tile_tasks(blend, frames[0], tiles, output, device, persistent, scripts)
        tasks = [replace(task, requirements=needs) for task in tile_tasks]
    else:
        tasks = [
            replace(
                _render_task(blend, chunk, output, device, persistent, scripts, check_blank),
                requirements=needs,
            )
            for chunk in chunk_frames(frames, chunk_size)
        ]
    if _read_bool(settings, "preview_video", False):
        preview = _preview_task(frames, output, fps, len(tasks))
        tasks.append(replace(preview, requirements=Requirements(tag=needs.tag)))
    return tasks


AUTO_CHUNK = "auto"
# Options whose tasks are tied to the render tasks as first planned, which re-chunking changes.
_FIXED_PLAN_OPTIONS = {"preview_video": "a preview video", "tiles": "tiles"}


def read_chunk_auto(settings: Mapping[str, Any]) -> float | None:
    """For `chunk_size` "auto", the seconds each task should take ('task_seconds', default
    60); None for a fixed chunk size. Public: the Server re-chunks the jobs it names."""
    if settings.get("chunk_size") != AUTO_CHUNK:
        if "task_seconds" in settings:
            raise JobCompileError("Setting 'task_seconds' needs chunk_size 'auto'.")
        return None
    seconds = settings.get("task_seconds", DEFAULT_TASK_SECONDS)
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not seconds > 0:
        raise JobCompileError(
            f"Setting 'task_seconds' must be a number of seconds above 0, "
            f"got {quote_for_message(seconds)}."
        )
    for key, what in _FIXED_PLAN_OPTIONS.items():
        if settings.get(key):
            raise JobCompileError(
                f"Chunk size 'auto' cannot be combined with {what}: it re-plans the render "
                "tasks that these depend on; give a fixed chunk size."
            )
    return float(seconds)


def _read_tiles(settings: Mapping[str, Any], frames: list[int]) -> int:
    """Read 'tiles': 0 when absent (whole frames), else from 2, for a job of one frame
    ('chunk_size' auto refuses it: read_chunk_auto). How many tiles the frame's pixels allow
    only Blender knows: the Worker checks that (core/tiles.py), the CLI too where it can."""
    if "tiles" not in settings:
        return 0
    tiles = _read_int(settings, "tiles", 0, 0, MAX_TILES)
    try:
        check_tile_count(tiles, MAX_TILES, 1)
    except TileError as exc:
        raise JobCompileError(str(exc)) from None
    if len(frames) != 1:
        raise JobCompileError(
            f"--tiles splits one frame over many machines, but the job has {len(frames)} "
            "frames; give --frames a single frame."
        )
    return tiles


def _tile_tasks(
    blend: str,
    frame: int,
    tiles: int,
    output: dict[str, str],
    device: str,
    persistent_data: bool,
    scripts: bool,
) -> list[TaskSpec]:
    """One task per tile of `frame`; the Worker turns index and count into the tile's region
    (flamenco.core.tiles) from the resolution its Blender reports."""
    whole = _render_task(blend, [frame], output, device, persistent_data, scripts)
    return [
        replace(
            whole,
            name=f"render {frame} tile {index + 1}/{tiles}",
            command={**whole.command, "tile": {"index": index, "count": tiles}},
        )
        for index in range(tiles)
    ]


def _read_tag(settings: Mapping[str, Any]) -> str | None:
    tag = settings.get("worker_tag")
    if tag is None or tag == "":
        return None
    if not isinstance(tag, str) or not TAG_PATTERN.match(tag):
        raise JobCompileError(
            f"Setting 'worker_tag' must be letters, digits, '.', '_' or '-', "
            f"got {quote_for_message(tag)}."
        )
    return tag


def _read_min_blender(settings: Mapping[str, Any]) -> str | None:
    version = settings.get("min_blender_version")
    if version is None or version == "":
        return None
    try:
        parse_version(str(version))
    except ValueError as exc:
        raise JobCompileError(f"Setting 'min_blender_version': {exc}") from None
    return str(version)


def _render_task(
    blend: str,
    chunk: list[int],
    output: dict[str, str],
    device: str,
    persistent_data: bool,
    scripts: bool,
    check_blank: bool = False,
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
    if check_blank:  # absent when off, as in jobs from before the setting
        command["check_blank"] = True
    return TaskSpec(
        name=render_task_name(chunk),
        type="blender",
        frames=tuple(chunk),
        command=command,
    )


def render_task_name(frames: Iterable[int]) -> str:
    return f"render {format_frame_range(list(frames))}"


@dataclass(frozen=True)
class RenderChunk:
    """A render task's frames as re-planned (`--chunk auto`): its name and command."""

    name: str
    frames: tuple[int, ...]
    command: dict[str, Any]


def rechunked_render(command: Mapping[str, Any], frames: tuple[int, ...]) -> RenderChunk:
    """The render task of `frames`, with the rest of its command from one of its job's."""
    return RenderChunk(render_task_name(frames), frames, {**command, "frames": list(frames)})


PREVIEW_FRAMES_DIR = "frames"


def preview_frame_path(frame: int, filename: str) -> str:
    """Where a rendered frame lands among an 'ffmpeg' task's files: frames/<frame>/<file name>.

    The frame number is part of the path so that the Worker can order the frames whatever the
    file names look like and whichever order the files arrive in.
    """
    return f"{PREVIEW_FRAMES_DIR}/{frame}/{filename}"


def _preview_task(frames: list[int], output: dict[str, str], fps: int, renders: int) -> TaskSpec:
    """The ffmpeg task that turns all rendered frames into a video, after every render task."""
    return TaskSpec(
        name="preview video",
        type="ffmpeg",
        frames=tuple(frames),
        command={"frames": list(frames), **output, "fps": fps},
        depends_on=tuple(range(renders)),
    )
