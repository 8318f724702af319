"""Frames are checked before they count (flamenco.frame_check), on a real farm with real
Blender: a Worker whose frames come out cut short fails its task saying so, another Worker
renders it again, and the job completes with whole frames only; with --check-blank a scene
that renders black fails its job with the reason."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from farmkit import DEMO_RESOLUTION, TestFarm, wait_until
from flamenco import wire
from flamenco.frame_check import FrameExpectation, check_frame
from flamenco.worker.blender import BlenderInstall, child_env

pytestmark = pytest.mark.blender

SCENES = Path(__file__).parent.parent / "scenes"


def corrupting_blender(folder: Path, version: str) -> Path:
    """A stand-in `blender` that runs the real Flamenco child (the bpy module of this Python)
    with a handler cutting every frame it writes to half (tests/scenes/corrupt_frames.py)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "blender"
    path.write_text(
        "#!/bin/sh\n"
        f'[ "$1" = "--version" ] && {{ echo "Blender {version}"; exit 0; }}\n'
        # Blender's own arguments up to "--python SCRIPT --": bpy runs the script directly.
        'while [ "$1" != "--python" ]; do shift; done\n'
        'script="$2"; shift 3\n'
        f'exec "{sys.executable}" -P "{SCENES / "corrupt_frames.py"}" "$script" "$@"\n'
    )
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def black_scene(install: BlenderInstall, source: Path, out: Path) -> Path:
    """`source` without lights or world, saved by Blender itself: it renders black."""
    out.parent.mkdir(parents=True, exist_ok=True)
    argv = install.script_argv(SCENES / "black_scene.py", [str(source), str(out)])
    done = subprocess.run(
        argv,
        env=child_env(out.parent / "user"),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0 and out.is_file(), done.stdout[-3000:] + done.stderr[-3000:]
    return out


def submit(farm: TestFarm, scene: Path, *args: str) -> str:
    done = farm.cli("submit", str(scene), "--json", *args)
    assert done.returncode == 0, done.stderr
    return str(json.loads(done.stdout)["id"])


def history(farm: TestFarm, job_id: str) -> list[wire.TaskEvent]:
    return farm.api().call("GET", f"/api/v1/jobs/{job_id}/history", wire.TaskEventList).root


def test_a_workers_truncated_frames_fail_its_tasks_and_another_worker_renders_them(
    farm: TestFarm, blender_install: BlenderInstall, demo_scene: Path, tmp_path: Path
) -> None:
    bad_blender = corrupting_blender(tmp_path / "bad", blender_install.version)
    farm.start_server()
    farm.start_manager()
    farm.start_worker("cuts", env={"FLAMENCO_WORKER_BLENDER": str(bad_blender)})
    job_id = submit(farm, demo_scene, "--frames", "1-4")

    # The corrupting Worker alone: its first frame is refused before it is ever reported.
    wait_until(
        lambda: any(e.status == "failed" and e.worker == "cuts" for e in history(farm, job_id)),
        120,
        "the corrupting Worker to fail a task",
    )
    job = farm.job(job_id)
    assert job.frames_done == 0, "a truncated frame was counted"
    assert job.last_error is not None
    assert job.last_error.startswith("Frame "), job.last_error
    assert " is truncated: the PNG has no IEND chunk." in job.last_error, job.last_error
    assert job.status == "active"  # a machine's fault: retried, not the job's end

    farm.start_worker("good")
    done = farm.wait_job(job_id)
    assert done.status == "completed", farm.logs()
    assert done.frames_done == 4
    events = history(farm, job_id)
    failed = {e.task_id for e in events if e.status == "failed" and e.outcome == "applied"}
    assert failed and all(
        e.worker == "cuts" for e in events if e.status == "failed" and e.outcome == "applied"
    )
    completed = {e.task_id: e.worker for e in events if e.status == "completed"}
    assert set(completed.values()) == {"good"}, completed
    assert failed <= set(completed)  # every task it failed was rendered again, elsewhere

    fetched = farm.cli("jobs", "download", job_id, str(tmp_path / "frames"))
    assert fetched.returncode == 0, fetched.stderr
    frames = sorted((tmp_path / "frames").glob("*.png"))
    assert len(frames) == 4
    whole = FrameExpectation(size=DEMO_RESOLUTION, file_format="PNG", check_blank=True)
    for number, path in enumerate(frames, start=1):
        check_frame(path, path.name, number, whole)


def test_check_blank_fails_a_job_whose_scene_renders_black(
    farm: TestFarm, blender_install: BlenderInstall, demo_scene: Path, tmp_path: Path
) -> None:
    scene = black_scene(blender_install, demo_scene, tmp_path / "black" / "black.blend")
    farm.start_server()
    farm.start_manager()
    farm.start_worker("w1")

    # Without --check-blank a black frame is a frame like any other.
    plain = submit(farm, scene, "--frames", "1")
    assert farm.wait_job(plain).status == "completed", farm.logs()

    done = farm.cli("submit", str(scene), "--frames", "1-3", "--check-blank", "--wait")
    assert done.returncode == 1, done.stderr
    sentence = "is blank: every pixel has the same value."
    assert sentence in done.stderr
    (job,) = [j for j in farm.api().call("GET", "/api/v1/jobs", wire.JobList).root if j.id != plain]
    assert job.settings["check_blank"] is True
    assert job.status == "failed" and job.frames_done == 0
    assert job.last_error is not None and job.last_error.startswith("Frame ")
    assert sentence in job.last_error
    assert job.blocklist == []  # the scene's fault, not the Worker's: failed at once
