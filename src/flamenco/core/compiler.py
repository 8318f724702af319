"""Job compilation: a job type turns its settings into the list of tasks to run.

A job type (the `JobType` interface below) is a pure compiler: a name, a label and a
description for people, a Pydantic model of its settings, and `compile`, from validated
settings to `TaskSpec`s. The built-ins live one a file in `core/job_types/`; every job type,
built-in or a studio's own, is found through the `flamenco.job_types` entry point group
(`flamenco/job_type_registry.py`). This module holds what all of them share: `TaskSpec`,
`compile_job` (settings checked against the model, every refusal one sentence), the setting
readers a model's fields validate with, and the render output settings the Server, the CLI
and the Worker read back.
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Annotated, Any, ClassVar, Protocol

from pydantic import BaseModel, BeforeValidator, Field, ValidationError, ValidationInfo

from flamenco.core.frames import FrameRangeError, parse_frame_range, quote_for_message
from flamenco.core.matching import TAG_PATTERN, Requirements, parse_version
from flamenco.core.names import MAX_LABEL_BYTES, UnsafePath, check_file_name


@dataclass(frozen=True)
class TaskSpec:
    """One task to create; depends_on holds indexes of other TaskSpecs in the same list.

    `type` names the Worker command that runs it (the `flamenco.commands` entry point group)
    and `command` is the parameters that command receives. `renders_frames`: the task's
    frames are frames of the job it makes (counted in the job's frames); False for a task
    that only reads them (a preview video) or makes other files.
    """

    name: str
    type: str
    frames: tuple[int, ...]
    command: dict[str, Any]
    depends_on: tuple[int, ...] = ()
    requirements: Requirements = field(default_factory=Requirements)
    renders_frames: bool = True


class JobCompileError(ValueError):
    """Job settings cannot be compiled; the message is one sentence for the user."""


class JobType(Protocol):
    """What a job type is: found by its entry point, listed by `flamenco job-types`."""

    name: str  # the entry point's name, e.g. "blender-render"
    label: str  # a few words for a menu
    description: str  # one or two sentences
    Settings: ClassVar[type[BaseModel]]

    def compile(self, settings: Any) -> list[TaskSpec]:
        """Tasks from settings that validated against `Settings`; JobCompileError for a
        refusal only the whole of them shows."""
        ...


# --- Settings that are files. Marked on a model's field with json_schema_extra. ---

FILE_KIND = "flamenco_file"
SCENE_FILE: dict[str, Any] = {FILE_KIND: "scene"}
"""The job's .blend: submitted with everything it uses, the Server checks it is a .blend."""
LOCAL_FILE: dict[str, Any] = {FILE_KIND: "local"}
"""A file on the submitter's machine: uploaded with the job, the setting rewritten to its
path in the job's files."""


def file_settings(settings_model: type[BaseModel]) -> dict[str, str]:
    """The model's fields that name files of the job, and their kind ("scene", "local")."""
    marked = {}
    for name, info in settings_model.model_fields.items():
        extra = info.json_schema_extra
        if isinstance(extra, dict) and isinstance(extra.get(FILE_KIND), str):
            marked[name] = str(extra[FILE_KIND])
    return marked


# --- Compiling ---


def read_settings(job_type: JobType, settings: Mapping[str, Any]) -> BaseModel:
    """`settings` validated against the job type's model, or JobCompileError with one
    sentence naming the setting. Public: the CLI checks settings before uploading."""
    if not isinstance(settings, Mapping):
        raise JobCompileError(
            f"Job settings must be a mapping of names to values, got {type(settings).__name__}."
        )
    known = set(job_type.Settings.model_fields)
    unknown = sorted(str(key) for key in settings if key not in known)
    if unknown:  # a typo like 'chunksize' must not be silently ignored
        names = ", ".join(quote_for_message(key) for key in unknown)
        noun = "setting" if len(unknown) == 1 else "settings"
        raise JobCompileError(f"Unknown {noun} {names} for job type {job_type.name!r}.")
    try:
        return job_type.Settings.model_validate(dict(settings))
    except ValidationError as exc:
        raise JobCompileError(_sentence(exc)) from None


def compile_job(job_type: JobType, settings: Mapping[str, Any]) -> list[TaskSpec]:
    """Compile `settings` for `job_type` into tasks, raising JobCompileError on bad input."""
    return job_type.compile(read_settings(job_type, settings))


def _sentence(exc: ValidationError) -> str:
    """The first of Pydantic's errors as one sentence: a reader's own sentence as it is, else
    Pydantic's message with the setting it is about."""
    first = exc.errors(include_url=False)[0]
    cause = first.get("ctx", {}).get("error")
    if isinstance(cause, JobCompileError):
        return str(cause)
    where = ".".join(str(part) for part in first["loc"])
    if first["type"] == "missing":
        return f"Setting {where!r} is required."
    message = " ".join(str(first["msg"]).split()).rstrip(".")
    if not where:  # a check of the whole model
        return f"{message.removeprefix('Value error, ')}."
    return f"Setting {where!r}: {message}, got {quote_for_message(first.get('input'))}."


# --- Setting readers. Each returns a valid value or raises JobCompileError. Used as a field's
# BeforeValidator, so a model's refusals read like the rest. ---


def read_str(key: str, value: Any) -> str:
    """A required string: None is a missing setting."""
    if value is None:
        raise JobCompileError(f"Setting {key!r} is required.")
    if not isinstance(value, str):
        raise JobCompileError(
            f"Setting {key!r} must be text, got {type(value).__name__} {quote_for_message(value)}."
        )
    return value


def read_int(key: str, value: Any, low: int, high: int) -> int:
    """A whole number within [low, high]; bools and numeric strings are refused."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise JobCompileError(
            f"Setting {key!r} must be a whole number, got {quote_for_message(value)}."
        )
    if not low <= value <= high:
        raise JobCompileError(f"Setting {key!r} must be from {low} to {high}, got {value}.")
    return value


def read_bool(key: str, value: Any) -> bool:
    """True or false; truthy strings like 'no' are refused rather than guessed."""
    if not isinstance(value, bool):
        raise JobCompileError(
            f"Setting {key!r} must be true or false, got {quote_for_message(value)}."
        )
    return value


def read_choice(key: str, value: Any, choices: tuple[str, ...]) -> str:
    """A string that must be one of `choices`."""
    text = read_str(key, value)
    if text not in choices:
        raise JobCompileError(
            f"Setting {key!r} must be one of {', '.join(choices)}, got {quote_for_message(text)}."
        )
    return text


def read_job_path(key: str, value: Any, suffix: str) -> str:
    """A relative path inside the job's files naming a `suffix` file, so it cannot escape
    them."""
    path = read_str(key, value)
    parts = path.replace("\\", "/").split("/")
    if path.startswith(("/", "\\")) or ":" in path or ".." in parts:
        raise JobCompileError(
            f"Setting {key!r} must be a relative path inside the job's files, "
            f"got {quote_for_message(path)}."
        )
    if not path.endswith(suffix) or parts[-1] == suffix:
        raise JobCompileError(
            f"Setting {key!r} must name a {suffix} file, got {quote_for_message(path)}."
        )
    return path


def read_frames(key: str, value: Any) -> str:
    """A frame range as written; the frame parser's sentence passes through unchanged."""
    text = read_str(key, value)
    try:
        parse_frame_range(text)
    except FrameRangeError as err:
        raise JobCompileError(str(err)) from err
    return text


def _with_name(reader: Any, *args: Any) -> BeforeValidator:
    """A field validator that runs `reader(field name, value, *args)`."""

    def validate(value: Any, info: ValidationInfo) -> Any:
        return reader(info.field_name or "?", value, *args)

    return BeforeValidator(validate)


def whole_number(low: int, high: int) -> Any:
    """An int field from `low` to `high` (the bounds are in its JSON schema too)."""
    return Annotated[int, Field(ge=low, le=high), _with_name(read_int, low, high)]


def one_of(choices: tuple[str, ...]) -> Any:
    """A str field that is one of `choices` (an enum in its JSON schema)."""
    return Annotated[
        str, Field(json_schema_extra={"enum": list(choices)}), _with_name(read_choice, choices)
    ]


def job_path(suffix: str) -> Any:
    """A str field naming a `suffix` file by its relative path in the job's files."""
    return Annotated[str, _with_name(read_job_path, suffix)]


Text = Annotated[str, _with_name(read_str)]
Flag = Annotated[bool, _with_name(read_bool)]
FrameRange = Annotated[str, Field(examples=["1-10,15,20-24", "1-100x5"]), _with_name(read_frames)]


def _read_tag(key: str, value: Any) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not TAG_PATTERN.match(value):
        raise JobCompileError(
            f"Setting {key!r} must be letters, digits, '.', '_' or '-', "
            f"got {quote_for_message(value)}."
        )
    return value


def _read_min_blender(key: str, value: Any) -> str | None:
    if value is None or value == "":
        return None
    try:
        parse_version(str(value))
    except ValueError as exc:
        raise JobCompileError(f"Setting {key!r}: {exc}") from None
    return str(value)


WorkerTag = Annotated[str | None, _with_name(_read_tag)]
BlenderVersion = Annotated[str | None, _with_name(_read_min_blender)]


# --- Render output, shared by the render and video job types and read back by the Server. ---

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


def read_output_pattern(key: str, value: Any) -> str:
    """A file name stem with '#' frame padding, never a path.

    ':' is refused too, because on Windows 'C:name' would switch drives when joined.
    """
    pattern = read_str(key, value)
    if "#" not in pattern:
        raise JobCompileError(
            f"Setting {key!r} must contain '#' for the frame number, "
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
            f"Setting {key!r} must be a plain file name of at most {MAX_LABEL_BYTES} "
            f"bytes without '/', '\\', '..' or ':', got {quote_for_message(pattern)}."
        )
    return pattern


def _read_output_format_value(key: str, value: Any) -> str:
    if value in (None, ""):
        return FROM_SCENE
    return read_choice(key, value, (FROM_SCENE, *OUTPUT_FORMATS))


OutputPattern = Annotated[str, _with_name(read_output_pattern)]
OutputFormat = Annotated[
    str,
    Field(json_schema_extra={"enum": [FROM_SCENE, *OUTPUT_FORMATS]}),
    _with_name(_read_output_format_value),
]


def read_output_format(settings: Mapping[str, Any]) -> str:
    """A job's 'output_format': one of Blender's file format names, or SCENE (also when absent
    or empty) for the file's own output settings."""
    return _read_output_format_value("output_format", settings.get("output_format"))


def frame_extension(name: str) -> str:
    """A frame file's extension as a job's format shows it: '.exr' (lowercase), or ''."""
    return PurePosixPath(name).suffix.lower()


def output_format_label(settings: Mapping[str, Any], frame_extensions: Iterable[str]) -> str:
    """What a job renders to, for people: the format it names, or for a job that keeps the
    scene's own output, the extensions (`frame_extension`) of the frames Blender wrote so far
    (nothing reads the .blend file's settings outside Blender)."""
    named = settings.get("output_format")
    if named not in (None, "", FROM_SCENE):
        return str(named)
    extensions = sorted(set(frame_extensions) - {""})
    return f"from the scene ({', '.join(extensions)})" if extensions else "from the scene"


PREVIEW_FRAMES_DIR = "frames"


def preview_frame_path(frame: int, filename: str) -> str:
    """Where a rendered frame lands among an 'ffmpeg' task's files: frames/<frame>/<file name>.

    The frame number is part of the path so that the Worker can order the frames whatever the
    file names look like and whichever order the files arrive in.
    """
    return f"{PREVIEW_FRAMES_DIR}/{frame}/{filename}"
