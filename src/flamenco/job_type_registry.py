"""The installed job types: every `flamenco.job_types` entry point, built-ins included (they
are declared in pyproject.toml like a studio's own package would declare its types).

The entry point's name is the job type's name and its value `module:OBJECT`, an object with
the `core.compiler.JobType` interface. One that cannot be loaded or does not fit is logged
and left out, so a broken plugin never takes the Server down with it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from functools import cache
from importlib.metadata import entry_points
from typing import Any

from pydantic import BaseModel

from flamenco import wire
from flamenco.core.compiler import JobCompileError, JobType, TaskSpec, compile_job
from flamenco.core.frames import quote_for_message

GROUP = "flamenco.job_types"
log = logging.getLogger("flamenco.job_types")


@cache
def installed_job_types() -> dict[str, JobType]:
    """Name -> job type, sorted by name; read once per process."""
    found: dict[str, JobType] = {}
    for point in entry_points(group=GROUP):
        try:
            job_type = point.load()
        except Exception:  # a plugin's import error is its own; the rest still work
            log.exception("job type %s (%s) cannot be loaded", point.name, point.value)
            continue
        problem = _misfit(point.name, job_type)
        if problem:
            log.error("job type %s (%s) left out: %s", point.name, point.value, problem)
            continue
        found.setdefault(point.name, job_type)
    return dict(sorted(found.items()))


def _misfit(name: str, job_type: Any) -> str | None:
    """Why `job_type` does not have the JobType interface, or None."""
    if getattr(job_type, "name", None) != name:
        return f"its name is {getattr(job_type, 'name', None)!r}, not the entry point's"
    for attribute in ("label", "description"):
        if not isinstance(getattr(job_type, attribute, None), str):
            return f"it has no text {attribute}"
    settings = getattr(job_type, "Settings", None)
    if not (isinstance(settings, type) and issubclass(settings, BaseModel)):
        return "its Settings is not a Pydantic model"
    if not callable(getattr(job_type, "compile", None)):
        return "it has no compile"
    return None


def find_job_type(name: str) -> JobType:
    """The installed job type `name`, or JobCompileError with the installed ones."""
    installed = installed_job_types()
    if name not in installed:
        raise unknown_job_type(name, list(installed))
    return installed[name]


def unknown_job_type(name: str, installed: list[str]) -> JobCompileError:
    """The refusal of a job type that is not among `installed`."""
    known = ", ".join(installed) or "none"
    return JobCompileError(
        f"Unknown job type {quote_for_message(name)}; installed job types: {known}."
    )


def compile_named(name: str, settings: Mapping[str, Any]) -> list[TaskSpec]:
    """Compile `settings` for the installed job type `name`."""
    return compile_job(find_job_type(name), settings)


def job_type_listing() -> list[wire.JobTypeInfo]:
    """Each installed job type with its settings' JSON schema, for people and the add-on."""
    return [
        wire.JobTypeInfo(
            name=name,
            label=job_type.label,
            description=job_type.description,
            settings_schema=job_type.Settings.model_json_schema(),
        )
        for name, job_type in installed_job_types().items()
    ]
