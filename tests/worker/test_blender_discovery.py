"""Which Blenders a Worker offers: every one given, or every one it finds, oldest first; the
version of an install unchanged on disk is remembered, not asked again at every start."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from flamenco.worker import blender
from flamenco.worker.blender import find_blenders
from flamenco.worker.blender_versions import install_key

pytestmark = pytest.mark.blender  # the Worker's own bpy module is one of them


def fake_blender(folder: Path, script: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "blender"
    path.write_text(f"#!/bin/sh\n{script}\n")
    path.chmod(0o755)
    return path


@pytest.fixture(autouse=True)
def memory_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The user's cache folder of this test: where the remembered versions go (every test
    here has its own, so that none finds what another remembered)."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache" / "flamenco" / "blender-versions.json"


def counted_blender(folder: Path, version: str) -> tuple[Path, Path]:
    """A Blender that writes a line to its runs file each time it is started."""
    runs = folder / "runs"
    return fake_blender(folder, f'echo run >> {runs}\necho "Blender {version}"'), runs


def starts(runs: Path) -> int:
    return len(runs.read_text().splitlines()) if runs.exists() else 0


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


def test_an_install_unchanged_on_disk_is_not_started_again_to_ask_its_version(
    tmp_path: Path, memory_file: Path
) -> None:
    blender, runs = counted_blender(tmp_path / "a", "4.1.0")
    assert [i.version for i in find_blenders([str(blender)])] == ["4.1.0"]
    assert [i.version for i in find_blenders([str(blender)])] == ["4.1.0"]
    assert starts(runs) == 1 and memory_file.is_file()

    blender.write_text(f'#!/bin/sh\necho run >> {runs}\necho "Blender 4.2.0"\n')  # upgraded
    assert [i.version for i in find_blenders([str(blender)])] == ["4.2.0"]
    assert starts(runs) == 2
    assert [i.version for i in find_blenders([str(blender)], remembered=False)] == ["4.2.0"]
    assert starts(runs) == 3  # flamenco doctor's way: every install started


def test_the_own_bpy_is_remembered_by_its_binary_without_importing_it(
    memory_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(Path(sys.executable).parent))
    probes: list[list[str]] = []
    real_probe = blender._probe

    def counting_probe(argv: list[str], *rest: object, **kw: object) -> str:
        probes.append(argv)
        return real_probe(argv, *rest, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(blender, "_probe", counting_probe)
    first = find_blenders()
    assert len(probes) == 1 and "import bpy" in probes[0][-1]
    assert find_blenders() == first  # asked nobody
    assert len(probes) == 1
    bpy_binary = importlib.util.find_spec("bpy").origin  # type: ignore[union-attr]
    assert json.loads(memory_file.read_text())["versions"] == {
        install_key(bpy_binary): first[-1].version
    }


@pytest.mark.parametrize("garbage", ["{not json", '{"format": 99, "versions": {"x": "1.0"}}', "[]"])
def test_a_memory_that_cannot_be_read_is_started_afresh(
    tmp_path: Path, memory_file: Path, garbage: str
) -> None:
    memory_file.parent.mkdir(parents=True)
    memory_file.write_text(garbage)
    blender, runs = counted_blender(tmp_path / "a", "4.1.0")
    assert [i.version for i in find_blenders([str(blender)])] == ["4.1.0"]
    assert starts(runs) == 1
    assert json.loads(memory_file.read_text()) == {
        "format": 1,
        "versions": {install_key(blender): "4.1.0"},
    }


def test_installs_gone_from_disk_are_forgotten_at_the_next_write(
    tmp_path: Path, memory_file: Path
) -> None:
    gone, _ = counted_blender(tmp_path / "gone", "3.6.0")
    find_blenders([str(gone)])
    gone.unlink()
    kept, _ = counted_blender(tmp_path / "kept", "4.1.0")
    find_blenders([str(kept)])
    assert json.loads(memory_file.read_text())["versions"] == {install_key(kept): "4.1.0"}
