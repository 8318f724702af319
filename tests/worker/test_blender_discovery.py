"""Which Blenders a Worker offers: every one given, or every one it finds, oldest first."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from flamenco.worker.blender import find_blenders

pytestmark = pytest.mark.blender  # the Worker's own bpy module is one of them


def fake_blender(folder: Path, script: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "blender"
    path.write_text(f"#!/bin/sh\n{script}\n")
    path.chmod(0o755)
    return path


def test_without_configuration_every_blender_on_path_and_the_own_bpy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = fake_blender(tmp_path / "a", 'echo "Blender 3.4.1"')
    newer = fake_blender(tmp_path / "b", 'echo "Blender 4.1.0"')
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "blender").symlink_to(old)  # the same Blender twice on PATH
    broken = fake_blender(tmp_path / "d", 'echo "cannot start"; exit 1')
    folders = [old.parent, tmp_path / "c", broken.parent, newer.parent, Path(sys.executable).parent]
    monkeypatch.setenv("PATH", ":".join(str(f) for f in folders))

    installs = find_blenders()

    assert [(i.version, i.kind) for i in installs] == [
        ("3.4.1", "executable"),
        ("4.1.0", "executable"),
        ("5.0.1", "bpy"),
    ]
    assert [i.where for i in installs] == [str(old), str(newer), sys.executable]


def test_configured_blenders_are_all_offered_once_per_version(tmp_path: Path) -> None:
    first = fake_blender(tmp_path / "a", 'echo "Blender 4.2.3 LTS"')
    same = fake_blender(tmp_path / "b", 'echo "Blender 4.2.3 LTS"')

    installs = find_blenders([sys.executable, str(first), str(same)])

    assert [(i.version, i.where) for i in installs] == [
        ("4.2.3", str(first)),
        ("5.0.1", sys.executable),
    ]
