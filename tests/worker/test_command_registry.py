"""commands.registry: the `flamenco.commands` entry points as importlib.metadata finds them in
a real distribution on sys.path. A studio's command is found (an object or a class); one whose
module cannot be imported, or whose object has no `run`, is logged and left out, and the
built-ins are still there, so one broken package never keeps a Worker from the others."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from distkit import installed_distribution
from flamenco.commands.registry import advertised, command_for, installed_commands

STUDIO = """
class Stamp:
    name = "stamp"

    async def run(self, task, report):
        report.log("stamped")


STAMP = Stamp()
NO_RUN = type("NoRun", (), {"name": "no-run"})()
"""

ENTRY_POINTS = """[flamenco.commands]
stamp = studio_commands:STAMP
stamp-class = studio_commands:Stamp
missing-module = studio_commands_missing:STAMP
missing-object = studio_commands:NOT_THERE
no-run = studio_commands:NO_RUN
"""


@pytest.fixture
def studio_commands(tmp_path: Path) -> Iterator[Path]:
    with installed_distribution(tmp_path, "studio_commands", STUDIO, ENTRY_POINTS):
        yield tmp_path


def test_a_studios_command_is_found_and_broken_ones_are_left_out_and_logged(
    studio_commands: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="flamenco.commands"):
        installed = installed_commands()

    assert {"stamp", "stamp-class"} <= set(installed)
    assert type(installed["stamp-class"]).__name__ == "Stamp"  # a class is instantiated
    for broken in ("missing-module", "missing-object", "no-run"):
        assert broken not in installed
        assert any(broken in record.getMessage() for record in caplog.records), broken
    # The built-ins load as before, and the Worker still says it has them.
    assert {"blender-render", "ffmpeg", "blender-script"} <= set(installed)
    assert {"blender", "blender-render", "stamp"} <= set(advertised(installed))
    assert command_for("stamp", installed) is installed["stamp"]


def test_without_the_package_its_commands_are_gone() -> None:
    installed = installed_commands()
    assert "stamp" not in installed
    assert {"blender-render", "ffmpeg", "blender-script"} <= set(installed)
