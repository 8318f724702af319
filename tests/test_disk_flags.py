"""A cache size, keep-days or GPU index that cannot be used stops the command with one
sentence, before it makes anything."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

HINT = "is not a size; write it like 20GB, 500MB or 1.5TiB, or 0 or unlimited for no limit."


def _flamenco(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> Any:
    return subprocess.run(
        [sys.executable, "-m", "flamenco", *args],
        env={**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "xdg"), **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=tmp_path,
    )


@pytest.mark.parametrize(
    ("args", "env", "sentence"),
    [
        (["worker", "--cache-size", "lots"], {}, f"Error: --cache-size: 'lots' {HINT}"),
        (
            ["manager", "--token", "t"],
            {"FLAMENCO_MANAGER_CACHE_SIZE": "20 XB"},
            f"Error: FLAMENCO_MANAGER_CACHE_SIZE: '20 XB' {HINT}",
        ),
        (["up", "--cache-size", "-1GB"], {}, f"Error: --cache-size: '-1GB' {HINT}"),
        (
            ["server", "--port", "1"],
            {"FLAMENCO_SERVER_KEEP_DAYS": "a week"},
            "Error: FLAMENCO_SERVER_KEEP_DAYS: 'a week' is not a valid float.",
        ),
        (
            ["worker", "--gpu", "-5", "--manager", "http://127.0.0.1:1"],
            {},
            "Error: --gpu: '-5' is not a GPU index: give 0, 1, … for one GPU, or -1 for every GPU.",
        ),
    ],
    ids=["worker-flag", "manager-env", "up-flag", "server-keep-days-env", "worker-gpu-flag"],
)
def test_a_disk_setting_that_cannot_be_used_stops_the_command(
    tmp_path: Path, args: list[str], env: dict[str, str], sentence: str
) -> None:
    done = _flamenco(tmp_path, *args, "--data-dir", str(tmp_path / "data"), env=env)
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.strip() == sentence
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "data").exists()  # stopped before it made anything
