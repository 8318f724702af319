"""Jobs that wait for jobs on a real farm (real Server, Manager, two Workers and Blender): a job
submitted with --after starts only once the job it names has completed, although a Worker is
idle before that, says so in `flamenco jobs show`, and then completes; --after naming an
unknown job is refused at submit with one sentence and a non-zero exit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from farmkit import TestFarm, wait_until
from flamenco import wire

pytestmark = pytest.mark.blender


def submit(farm: TestFarm, scene: Path, *args: str) -> str:
    done = farm.cli("submit", str(scene), "--json", *args)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)["id"]


def history(farm: TestFarm, job_id: str) -> list[wire.TaskEvent]:
    path = f"/api/v1/jobs/{job_id}/history"
    return farm.api().call("GET", path, wire.TaskEventList).root


def test_a_job_after_another_starts_once_that_one_completed_and_then_completes(
    farm: TestFarm, slow_scene: Path, demo_scene: Path
) -> None:
    farm.start_server()
    farm.start_manager()
    farm.start_worker("w1")
    farm.start_worker("w2")

    # Four tasks on two Workers: one Worker is idle while the last of them renders, so a
    # job that did not wait would start then.
    bake = submit(farm, slow_scene, "--frames", "1-4", "--name", "bake")
    render = submit(farm, demo_scene, "--frames", "1-2", "--name", "render", "--after", bake)

    shown = farm.cli("jobs", "show", render)
    assert shown.returncode == 0, shown.stderr
    assert f"Starts after: {bake}" in shown.stdout
    assert f"Waits for job {bake} (" in shown.stdout, shown.stdout

    assert farm.wait_job(bake).status == "completed", farm.logs()
    done = farm.wait_job(render)
    assert done.status == "completed", farm.logs()
    assert (done.frames_done, done.after, done.waiting_reason) == (2, [bake], None)

    bake_ended = max(e.at for e in history(farm, bake) if e.status == "completed")
    render_started = min(
        e.at for e in history(farm, render) if e.status == "active" and e.outcome == "applied"
    )
    assert render_started >= bake_ended, (render_started, bake_ended)


def test_after_an_unknown_job_is_refused_with_one_sentence(
    farm: TestFarm, demo_scene: Path
) -> None:
    farm.start_server()
    done = farm.cli("submit", str(demo_scene), "--frames", "1", "--after", "nosuchjob,")
    assert done.returncode != 0
    assert "There is no job with id 'nosuchjob' to wait for." in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    wait_until(lambda: farm.cli("jobs", "list", "--json").returncode == 0, 30, "jobs list")
    assert json.loads(farm.cli("jobs", "list", "--json").stdout) == []
