"""Collecting a scene copies nothing: only the .blend files whose paths the tracer rewrites are
written, into the temporary folder; every other file is read where it is. The tracer losing
its temporary files once costs a second try, not the submission."""

from __future__ import annotations

import shutil
import tempfile
import threading
from pathlib import Path

import pytest
from blender_asset_tracer import pack as bat_pack

from flamenco import packing
from testdata import CORPUS

BLEND = CORPUS / "basic_file.blend"
# subdir/doubly_linked_up.blend links ../linked_cube.blend, which links basic_file.blend.
LINKED_UP = CORPUS / "subdir" / "doubly_linked_up.blend"


def files_under(folder: Path) -> dict[str, int]:
    return {
        p.relative_to(folder).as_posix(): p.stat().st_size
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def temp_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The process's temporary folder (TMPDIR), empty, for this test alone."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def test_only_rewritten_blend_files_are_written(temp_folder: Path) -> None:
    assert LINKED_UP.is_file(), f"the blend corpus is missing at {LINKED_UP}"
    threads_before = set(threading.enumerate())
    scene = packing.pack_scene(LINKED_UP)
    try:
        written = files_under(temp_folder)
        assert written, "the rewritten .blend files are in the temporary folder"
        assert all(name.endswith(".blend") for name in written), written
        rewritten_originals = [LINKED_UP, CORPUS / "linked_cube.blend"]
        assert sum(written.values()) <= sum(p.stat().st_size for p in rewritten_originals)
        assert scene.blend == "doubly_linked_up.blend"
        assert scene.written == {
            "doubly_linked_up.blend",
            f"_outside_project/{CORPUS.relative_to('/').as_posix()}/linked_cube.blend",
        }
        for rel in scene.written:
            assert temp_folder in scene.files[rel].parents
        # The library's own library needs no rewrite: it is read where it is.
        untouched = f"_outside_project/{CORPUS.relative_to('/').as_posix()}/basic_file.blend"
        assert scene.files[untouched] == CORPUS / "basic_file.blend"
        assert set(threading.enumerate()) <= threads_before, "no copier thread"
    finally:
        scene.close()
    assert files_under(temp_folder) == {}


def test_a_scene_that_needs_no_rewrite_writes_nothing(temp_folder: Path) -> None:
    image_dir = CORPUS / "image_sequencer.blend"
    scene = packing.pack_scene(image_dir)
    try:
        assert files_under(temp_folder) == {} and scene.written == set()
        assert scene.files[scene.blend] == image_dir
        frames = [rel for rel in scene.files if rel.startswith("imgseq/")]
        assert frames, scene.files
        for rel in frames:
            assert scene.files[rel] == CORPUS / rel
    finally:
        scene.close()


def test_a_failure_leaves_no_temporary_files(
    temp_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fails(self: bat_pack.Packer) -> None:
        raise OSError("disk gone")

    monkeypatch.setattr(bat_pack.Packer, "_group_rewrites", fails)
    with pytest.raises(packing.PackError, match=r"cannot be read as a \.blend file"):
        packing.pack_scene(LINKED_UP)
    assert files_under(temp_folder) == {}


def test_the_tracer_losing_its_temporary_files_once_is_retried(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Reproduced outside the tests: with several processes each packing scenes in turn, the
    tracer's temporary folder is sometimes emptied under it (2 in 240 packs). Here the first
    attempt loses its files on purpose."""
    rewrite = bat_pack.Packer._rewrite_paths
    attempts: list[Path] = []

    def lost_once(self: bat_pack.Packer) -> None:
        attempts.append(self._rewrite_in)
        if len(attempts) == 1:
            shutil.rmtree(self._rewrite_in)
        rewrite(self)

    monkeypatch.setattr(bat_pack.Packer, "_rewrite_paths", lost_once)
    scene = packing.pack_scene(LINKED_UP)
    try:
        assert len(attempts) == 2
        assert scene.files[scene.blend].is_file()
    finally:
        scene.close()
