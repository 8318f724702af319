"""`submit --chunk auto` on a real farm with real Blender: the job starts with one frame per
task, its queued tasks are merged once frames have rendered, and it completes with every frame
rendered once; bad auto options are refused by the CLI with one sentence, creating nothing."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from farmkit import DEMO_FRAMES, TestFarm
from flamenco import wire

pytestmark = pytest.mark.blender

FRAMES = list(range(1, DEMO_FRAMES + 1))


def test_chunk_auto_merges_queued_tasks_and_renders_every_frame_once(
    farm: TestFarm, demo_scene: Path
) -> None:
    farm.start_server()
    farm.start_manager()
    farm.start_worker("w1")
    done = farm.cli(
        "submit",
        str(demo_scene),
        "--frames",
        f"1-{DEMO_FRAMES}",
        "--chunk",
        "auto",
        "--task-seconds",
        "5",
        "--json",
    )
    assert done.returncode == 0, done.stderr
    job_id = json.loads(done.stdout)["id"]
    assert f"{DEMO_FRAMES} tasks" in done.stderr  # the first plan: one frame per task

    job = farm.wait_job(job_id, timeout=300)
    assert job.status == "completed", farm.logs()
    tasks = farm.tasks(job_id)
    # Demo frames render well under 5 s each: the queued ones were merged.
    assert len(tasks) < DEMO_FRAMES, [t.frames for t in tasks]
    assert [f for t in tasks for f in t.frames] == FRAMES  # disjoint, in order, all of them
    frames = farm.api().call("GET", f"/api/v1/jobs/{job_id}/frames", wire.FrameList).root
    assert [f.frame for f in frames] == FRAMES
    assert len(list(Path(job.output_dir).iterdir())) == DEMO_FRAMES
    history = farm.api().call("GET", f"/api/v1/jobs/{job_id}/history", wire.TaskEventList).root
    completions = Counter(
        e.task_id for e in history if e.status == "completed" and e.outcome == "applied"
    )
    assert completions == Counter({t.id: 1 for t in tasks})
    assert "queued tasks re-planned" in farm.logs()


@pytest.mark.parametrize(
    ("args", "sentence"),
    [
        (
            ["--chunk", "auto", "--task-seconds", "0"],
            "Setting 'task_seconds' must be a number of seconds above 0, got 0.0.",
        ),
        (
            ["--chunk", "auto", "--preview-video"],
            "Chunk size 'auto' cannot be combined with a preview video",
        ),
        (
            ["--chunk", "3", "--task-seconds", "10"],
            "Setting 'task_seconds' needs chunk_size 'auto'.",
        ),
        (["--chunk", "fast"], "--chunk must be a whole number of frames above 0 or 'auto'"),
    ],
)
def test_bad_chunk_auto_options_are_refused_and_create_nothing(
    farm: TestFarm, demo_scene: Path, args: list[str], sentence: str
) -> None:
    farm.start_server()
    done = farm.cli("submit", str(demo_scene), "--frames", "1-4", *args)
    assert done.returncode != 0
    assert sentence in " ".join(done.stderr.split()), done.stderr
    assert farm.api().call("GET", "/api/v1/jobs", wire.JobList).root == []
