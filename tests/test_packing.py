"""Packing a scene that fails half-way must not leave the copier thread waiting forever."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import pytest

from farmkit import wait_until
from flamenco import packing

BLEND = Path(__file__).resolve().parents[2] / "shared" / "blend-corpus" / "basic_file.blend"


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
