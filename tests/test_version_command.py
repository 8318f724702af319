"""`flamenco --version` and `flamenco version`, run as the real command."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys

import pytest


@pytest.mark.parametrize("args", [["--version"], ["version"]])
def test_the_version_is_printed_and_the_command_succeeds(args: list[str]) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "flamenco", *args], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"flamenco {importlib.metadata.version('flamenco')}\n"
    assert importlib.metadata.version("flamenco") == "0.1.0"  # the one in pyproject.toml
