"""Job types in the panel: the Server's list (`GET /api/v1/job-types`), the chosen type's
settings built from its JSON schema, and their values read as the CLI's `--set` reads them
(`flamenco_settings_schema.py`, core/settings_schema.py copied in by the builder).

The built-in `blender-render` keeps its own hand-made panel (properties.py); any other type
gets one row per setting: a text box, a tick box for true/false, a file picker for a file
sent with the job. The job's .blend fills the settings its type marks as the scene.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import bpy

from . import state
from .api import FlamencoError, Server
from .flamenco_settings_schema import (
    FLAG,
    SettingField,
    SettingTextError,
    local_job_path,
    missing_local_file,
    parse_setting,
    setting_fields,
)
from .preferences import preferences

RENDER = "blender-render"  # the panel's own settings (properties.py)
TIMEOUT_S = 5.0


def schema_of(name: str) -> dict[str, Any] | None:
    for job_type in state.job_types:
        if job_type.get("name") == name:
            return job_type.get("settings_schema") or {}
    return None


def type_suggestions(
    _self: bpy.types.PropertyGroup, _context: bpy.types.Context, edit_text: str
) -> list[str]:
    names = [RENDER] + [str(t.get("name")) for t in state.job_types if t.get("name") != RENDER]
    return [name for name in names if edit_text.lower() in name.lower()]


class FlamencoTypeSetting(bpy.types.PropertyGroup):
    """One setting of a job type other than blender-render; `name` is its key."""

    label: bpy.props.StringProperty(name="Label")
    kind: bpy.props.StringProperty(name="Kind")
    local_file: bpy.props.BoolProperty(name="Local File")
    hint: bpy.props.StringProperty(name="Hint")
    text: bpy.props.StringProperty(name="Value", description="Typed as `flamenco submit --set`")
    path: bpy.props.StringProperty(name="File", subtype="FILE_PATH")
    flag: bpy.props.BoolProperty(name="On")


def rebuild_settings(settings: Any) -> None:
    """The chosen type's settings from its schema, keeping the values of those it had."""
    kept = {item.name: (item.text, item.path, item.flag) for item in settings.type_settings}
    settings.type_settings.clear()
    schema = schema_of(settings.job_type) if settings.job_type != RENDER else None
    for field in setting_fields(schema or {}):
        if field.file == "scene":
            continue
        item = settings.type_settings.add()
        item.name, item.kind, item.local_file = field.name, field.kind, field.file == "local"
        item.label = field.name.replace("_", " ").title()
        item.hint = f"{field.summary()}; {'required' if field.required else 'optional'}"
        default = "" if field.default in (None, []) else str(field.default)
        item.text, item.path, item.flag = kept.get(field.name, (default, "", field.default is True))


def job_type_changed(settings: Any, _context: bpy.types.Context) -> None:
    rebuild_settings(settings)


def draw_settings(layout: Any, settings: Any) -> None:
    if schema_of(settings.job_type) is None:
        layout.label(text="Refresh the job types to see this type's settings.", icon="ERROR")
        return
    for item in settings.type_settings:
        what = "flag" if item.kind == FLAG else "path" if item.local_file else "text"
        layout.prop(item, what, text=item.label)
        layout.label(text=item.hint)


def read_settings(
    settings: Any, original: Path
) -> tuple[dict[str, Any], dict[str, Path], list[str]]:
    """The chosen type's settings as the Server takes them, the local files to send (path in
    the job -> file) and the settings the job's .blend fills; FlamencoError with one sentence
    for a value that cannot be."""
    schema = schema_of(settings.job_type)
    if schema is None:
        raise FlamencoError(
            f"The job type '{settings.job_type}' is not among the Server's; refresh the job types."
        )
    fields = {field.name: field for field in setting_fields(schema)}
    values: dict[str, Any] = {}
    files: dict[str, Path] = {}
    try:
        for item in settings.type_settings:
            field = fields.get(item.name)
            if field is not None:
                _read_one(field, item, original, values, files)
    except SettingTextError as exc:
        raise FlamencoError(str(exc)) from None
    if "min_blender_version" in fields:  # this Blender saves the job's copy
        values.setdefault("min_blender_version", "{}.{}".format(*bpy.app.version[:2]))
    return values, files, [name for name, field in fields.items() if field.file == "scene"]


def _read_one(
    field: SettingField, item: Any, original: Path, values: dict[str, Any], files: dict[str, Path]
) -> None:
    if field.kind == FLAG:
        values[field.name] = item.flag
    elif item.local_file:
        if item.path.strip():
            file = Path(bpy.path.abspath(item.path)).resolve()
            if not file.is_file():
                raise missing_local_file(field.name, file)
            job_path = local_job_path(field.name, file, original.resolve().parent, original.name)
            values[field.name], files[job_path] = job_path, file
    elif item.text.strip():  # an empty box: the default, or the Server says it is required
        values[field.name] = parse_setting(field, item.text)


def fetch_job_types(context: bpy.types.Context) -> None:
    """The Server's job types into state.job_types, and the panel's settings rebuilt."""
    prefs = preferences(context)
    server = Server(prefs.server_url, prefs.api_token, TIMEOUT_S, prefs.ca_bundle)
    listing = server.get("/api/v1/job-types")
    state.job_types = (
        [t for t in listing if isinstance(t, dict)] if isinstance(listing, list) else []
    )
    for scene in bpy.data.scenes:
        rebuild_settings(scene.flamenco)


class FLAMENCO_OT_refresh_job_types(bpy.types.Operator):
    """Ask the Flamenco Server which job types it has"""

    bl_idname = "flamenco.refresh_job_types"
    bl_label = "Refresh Job Types"

    def execute(self, context: bpy.types.Context) -> set[str]:
        try:
            fetch_job_types(context)
        except FlamencoError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        names = ", ".join(str(t.get("name")) for t in state.job_types)
        self.report({"INFO"}, f"Job types: {names or 'none'}.")
        return {"FINISHED"}


CLASSES: tuple[type, ...] = (FlamencoTypeSetting, FLAMENCO_OT_refresh_job_types)
