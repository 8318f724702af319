"""Packing a scene that fails half-way must not leave the copier thread waiting forever, and
the tracer losing its temporary files once costs a second try, not the submission."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import pytest

from farmkit import wait_until
from flamenco import packing
from testdata import CORPUS

BLEND = CORPUS / "basic_file.blend"


def copier_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if isinstance(t, packing._PromptCopier)]


def test_a_failure_after_the_copier_started_stops_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """Seen in CI: the tracer's temporary folder was gone when it wrote pack-info.txt; the
    copier thread then waited for files forever and `flamenco submit` never exited."""
    assert BLEND.is_file(), f"the blend corpus is missing at {BLEND}"
    write_info = packing._Packer._write_info_file

    def folder_gone(self: packing._Packer) -> None:
        shutil.rmtree(self._rewrite_in)
        write_info(self)

    monkeypatch.setattr(packing._Packer, "_write_info_file", folder_gone)
    with pytest.raises(packing.PackError, match=r"cannot be read as a \.blend file"):
        packing.pack_scene(BLEND)
    wait_until(lambda: not copier_threads(), 10, "the copier thread stopped")


def test_the_tracer_losing_its_temporary_files_once_is_retried(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Reproduced outside the tests: with several processes each packing scenes in turn, the
    tracer's temporary folder is sometimes emptied between writing pack-info.txt and queuing
    it (2 in 240 packs). Here the first attempt loses its files on purpose."""
    write_info = packing._Packer._write_info_file
    attempts: list[Path] = []

    def lost_once(self: packing._Packer) -> None:
        attempts.append(self._rewrite_in)
        if len(attempts) == 1:
            shutil.rmtree(self._rewrite_in)
        write_info(self)

    monkeypatch.setattr(packing._Packer, "_write_info_file", lost_once)
    scene = packing.pack_scene(BLEND)
    try:
        assert len(attempts) == 2
        assert scene.blend == "basic_file.blend" and (scene.files["basic_file.blend"]).is_file()
    finally:
        scene.close()
    wait_until(lambda: not copier_threads(), 10, "the copier threads stopped")
