"""A job type's settings as its JSON schema describes them (`GET /api/v1/job-types`): what kind
of value each takes, and a value typed by a person (`flamenco submit --set key=value`, a text
box of the add-on) read as that kind.

Standard library only: the add-on's zip carries a copy (`addon/builder.py`, as
`flamenco_settings_schema.py`) and builds its panel with it, so the CLI and the add-on read
settings alike. The Server's own check stays the job type's Pydantic model; this only turns
text into the JSON value the model expects.
"""

from __future__ import annotations

import json
import math
import re
import shlex
from dataclasses import dataclass
from pathlib import PurePath, PurePosixPath
from typing import Any

TEXT, WHOLE, NUMBER, FLAG, LIST, ANY = "text", "whole number", "number", "true/false", "list", "any"
_TRUE = ("true", "yes", "on", "1")
_FALSE = ("false", "no", "off", "0")
_NONE = ("", "none", "null")
_WHOLE = re.compile(r"[+-]?[0-9]+")
SUBMITTED_DIR = "_submitted"  # where a local file from outside the scene's folder goes


class SettingTextError(ValueError):
    """Text that is not a value of its setting; the message is one sentence."""


@dataclass(frozen=True)
class SettingField:
    """One setting of a job type, from its JSON schema."""

    name: str
    kind: str  # TEXT, WHOLE, NUMBER, FLAG, LIST or ANY
    required: bool
    default: Any
    description: str
    choices: tuple[str, ...] = ()  # the only values it takes, when it has such a list
    words: tuple[str, ...] = ()  # texts it takes besides its kind's values (chunk_size 'auto')
    optional: bool = False  # takes no value (null)
    file: str | None = None  # "scene" (the job's .blend) or "local" (uploaded with the job)
    minimum: float | None = None
    maximum: float | None = None

    def summary(self) -> str:
        """The kind of value, for people: 'whole number from 1 to 240 or auto'."""
        kind = f"one of {', '.join(self.choices)}" if self.choices else self.kind
        if self.minimum is not None and self.maximum is not None:
            kind += f" from {_number_text(self.minimum)} to {_number_text(self.maximum)}"
        if self.words:
            kind += " or " + " or ".join(self.words)
        if self.file:
            kind += ", the job's .blend" if self.file == "scene" else ", a local file"
        return kind


def _number_text(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def setting_fields(schema: dict[str, Any]) -> list[SettingField]:
    """Each property of an object schema (Pydantic's `model_json_schema`), in its order."""
    required = set(schema.get("required", ()))
    return [
        _field(name, prop, name in required) for name, prop in schema.get("properties", {}).items()
    ]


def _field(name: str, prop: dict[str, Any], required: bool) -> SettingField:
    options = prop.get("anyOf", [prop])
    kinds = [option for option in options if option.get("type") != "null"]
    words = tuple(str(option["const"]) for option in kinds if "const" in option)
    typed = [option for option in kinds if "const" not in option] or kinds
    main = typed[0] if len(typed) == 1 else {}
    choices = tuple(str(value) for value in prop.get("enum", main.get("enum", ())))
    return SettingField(
        name=name,
        kind=_kind(main),
        required=required,
        default=prop.get("default"),
        description=" ".join(str(prop.get("description", "")).split()),
        choices=choices,
        words=words if len(typed) < len(kinds) else (),
        optional=len(kinds) < len(options),
        file=prop.get("flamenco_file"),
        minimum=main.get("minimum"),
        maximum=main.get("maximum"),
    )


def _kind(option: dict[str, Any]) -> str:
    if option.get("type") == "array":
        return LIST
    return {"string": TEXT, "integer": WHOLE, "number": NUMBER, "boolean": FLAG}.get(
        option.get("type", ""), ANY
    )


def parse_assignment(text: str) -> tuple[str, str]:
    """`key=value` (the value may hold '=' itself)."""
    key, equals, value = text.partition("=")
    if not equals or not key.strip():
        raise SettingTextError(f"--set takes key=value, got {text!r}.")
    return key.strip(), value


def parse_setting(field: SettingField, text: str) -> Any:
    """`text` as the value `field` takes, or SettingTextError with one sentence."""
    if field.optional and text.strip().lower() in _NONE:
        return None
    if text in field.words:
        return text
    if field.choices and text not in field.choices:
        raise SettingTextError(
            f"Setting {field.name!r} takes one of {', '.join(field.choices)}, got {text!r}."
        )
    try:
        return _PARSERS[field.kind](text)
    except ValueError:
        words = "".join(f" or {word}" for word in field.words)
        raise SettingTextError(
            f"Setting {field.name!r} takes {_ARTICLE[field.kind]}{words}, got {text!r}."
        ) from None


def _whole(text: str) -> int:
    if not _WHOLE.fullmatch(text.strip()):
        raise ValueError(text)
    return int(text)


def _number(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(text)
    return value


def _flag(text: str) -> bool:
    word = text.strip().lower()
    if word in _TRUE or word in _FALSE:
        return word in _TRUE
    raise ValueError(text)


def _list(text: str) -> list[Any]:
    """A JSON list, or words as a shell splits them ('-o "a b"' is two)."""
    if text.lstrip().startswith("["):
        value = json.loads(text)
        if not isinstance(value, list):
            raise ValueError(text)
        return value
    return shlex.split(text)


def _any(text: str) -> Any:
    """JSON where it is JSON, else the text itself."""
    try:
        return json.loads(text)
    except ValueError:
        return text


_PARSERS = {TEXT: str, WHOLE: _whole, NUMBER: _number, FLAG: _flag, LIST: _list, ANY: _any}
_ARTICLE = {
    TEXT: "text",
    WHOLE: "a whole number",
    NUMBER: "a number",
    FLAG: "true or false",
    LIST: "a list",
    ANY: "a value",
}


def parse_settings(
    fields: list[SettingField], assignments: list[str], job_type: str
) -> dict[str, Any]:
    """`--set key=value`s as settings, each read as its field's kind; an unknown key is
    refused with the type's settings."""
    by_name = {field.name: field for field in fields}
    settings: dict[str, Any] = {}
    for assignment in assignments:
        key, text = parse_assignment(assignment)
        if key not in by_name:
            known = ", ".join(by_name) or "none"
            raise SettingTextError(
                f"Job type {job_type!r} has no setting {key!r}; its settings: {known}."
            )
        settings[key] = parse_setting(by_name[key], text)
    return settings


def local_job_path(key: str, file: PurePath, scene_folder: PurePath, blend: str) -> str:
    """Where a local file (a setting marked "local") goes among the job's files: where it lies
    from the scene's folder, the scene being `blend` in the job; a file outside that folder
    goes to `_submitted/<setting>/<name>`. Both paths absolute and resolved."""
    try:
        inside = file.relative_to(scene_folder)
    except ValueError:
        return f"{SUBMITTED_DIR}/{key}/{file.name}"
    return str(PurePosixPath(blend).parent / inside.as_posix())


def missing_local_file(key: str, file: PurePath) -> SettingTextError:
    return SettingTextError(f"The file '{file}' of setting '{key}' does not exist.")
