"""job_type_registry: the `flamenco.job_types` entry points as importlib.metadata finds them in
a real distribution on sys.path: a studio's type is found, one that cannot be imported or does
not fit the interface is logged and left out, and an unknown name gets the installed ones."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from distkit import installed_distribution
from flamenco.core.compiler import JobCompileError
from flamenco.job_type_registry import (
    compile_named,
    find_job_type,
    installed_job_types,
    job_type_listing,
)

STUDIO = """
from pydantic import BaseModel

from flamenco.core.compiler import TaskSpec


class Settings(BaseModel):
    text: str


class Echo:
    name = "echo"
    label = "Echo"
    description = "Says it."
    Settings = Settings

    def compile(self, settings):
        return [TaskSpec("echo", "echo", (), {"text": settings.text}, renders_frames=False)]


JOB_TYPE = Echo()
MISNAMED = Echo()
NO_MODEL = type("NoModel", (), {"name": "no-model", "label": "x", "description": "y"})()
"""

ENTRY_POINTS = """[flamenco.job_types]
echo = studio_types:JOB_TYPE
broken = studio_types_missing:JOB_TYPE
misnamed = studio_types:MISNAMED
no-model = studio_types:NO_MODEL
"""


@pytest.fixture
def studio_package(tmp_path: Path) -> Iterator[Path]:
    with installed_distribution(tmp_path, "studio_types", STUDIO, ENTRY_POINTS):
        installed_job_types.cache_clear()
        try:
            yield tmp_path
        finally:
            installed_job_types.cache_clear()


def test_a_studios_job_type_is_found_and_misfits_are_left_out(
    studio_package: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="flamenco.job_types"):
        names = list(installed_job_types())
    assert names == ["blender-render", "blender-script", "echo", "ffmpeg"]
    logged = caplog.text
    assert "job type broken (studio_types_missing:JOB_TYPE) cannot be loaded" in logged
    assert "job type misnamed (studio_types:MISNAMED) left out: its name is 'echo'" in logged
    assert "job type no-model (studio_types:NO_MODEL) left out: its Settings is not" in logged
    assert compile_named("echo", {"text": "hi"})[0].command == {"text": "hi"}
    assert [t.name for t in job_type_listing()] == names
    (echo,) = [t for t in job_type_listing() if t.name == "echo"]
    assert echo.settings_schema["required"] == ["text"]


def test_an_unknown_job_type_names_the_installed_ones() -> None:
    with pytest.raises(JobCompileError) as caught:
        find_job_type("blender-rendr")
    assert str(caught.value) == (
        "Unknown job type 'blender-rendr'; installed job types: "
        "blender-render, blender-script, ffmpeg."
    )
