"""The add-on's Chunks by Time sends what the CLI's --chunk auto sends, and the compiler reads
it (its JobRequest is plain Python: no Blender needed for this part)."""

from __future__ import annotations

from pathlib import Path

import pytest

from flamenco.addon.render_flamenco.submission import JobRequest
from flamenco.core.compiler import JobCompileError, compile_job
from flamenco.core.job_types.blender_render import JOB_TYPE as BLENDER_RENDER
from flamenco.core.job_types.blender_render import read_chunk_auto


def request(frames: str = "1-30", **fields: object) -> JobRequest:
    here = Path("/nonexistent")
    return JobRequest("http://x", "t", "", here, here, here, "job", frames, **fields)  # type: ignore[arg-type]


def test_chunks_by_time_become_chunk_auto_with_the_target() -> None:
    settings = request(chunk_size=7, task_seconds=12.5).settings("s.blend")
    assert (settings["chunk_size"], settings["task_seconds"]) == ("auto", 12.5)
    assert read_chunk_auto(settings) == 12.5
    tasks = compile_job(BLENDER_RENDER, settings)
    assert [t.frames for t in tasks] == [(f,) for f in range(1, 31)]  # one frame each, first


def test_without_chunks_by_time_the_chunk_size_stays() -> None:
    settings = request(chunk_size=7).settings("s.blend")
    assert settings["chunk_size"] == 7 and "task_seconds" not in settings
    assert read_chunk_auto(settings) is None


def test_chunks_by_time_with_tiles_is_refused_with_the_servers_sentence() -> None:
    settings = request(task_seconds=5.0, tiles=4, frames="1").settings("s.blend")
    with pytest.raises(JobCompileError, match="cannot be combined with tiles"):
        compile_job(BLENDER_RENDER, settings)
