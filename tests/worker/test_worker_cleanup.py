"""A Worker's disk: job folders go once it is done with their job; stale temp folders at start."""

from __future__ import annotations

from pathlib import Path

from flamenco.worker.cleanup import SWEEP_EVERY_S, JobFolders, sweep_temp_folders


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _job_folder(root: Path, job_id: str) -> Path:
    files = root / job_id / "files"
    files.mkdir(parents=True)
    (files / "scene.blend").write_bytes(b"BLENDER")
    (root / job_id / "out").mkdir()
    return root / job_id


def test_a_job_folder_goes_after_its_job_was_idle_long_enough_never_while_busy(
    tmp_path: Path,
) -> None:
    clock = Clock()
    root = tmp_path / "jobs"
    folders = JobFolders(root, idle_s=600, worker="w1", clock=clock)
    done, running, warm = (_job_folder(root, j) for j in ("done", "running", "warm"))
    for job_id in ("done", "running", "warm"):
        folders.used(job_id)

    clock.now += 599
    assert folders.sweep(["running", "warm"]) == []
    clock.now += SWEEP_EVERY_S  # 10 minutes and more since the last task of each
    assert folders.sweep(["running", "warm"]) == ["done"]
    assert not done.exists() and running.exists() and warm.exists()

    # Once nothing of them runs or stays warm, they go too, counted from then.
    clock.now += SWEEP_EVERY_S
    assert folders.sweep([]) == []
    clock.now += 600
    assert sorted(folders.sweep([])) == ["running", "warm"]
    assert list(root.iterdir()) == []


def test_a_job_that_comes_back_keeps_its_folder(tmp_path: Path) -> None:
    clock = Clock()
    root = tmp_path / "jobs"
    folders = JobFolders(root, idle_s=600, worker="w1", clock=clock)
    job = _job_folder(root, "j1")
    folders.used("j1")
    clock.now += 500
    folders.used("j1")  # its next task came
    clock.now += 500
    assert folders.sweep([], force=True) == []
    assert job.exists()


def test_folders_an_earlier_run_left_are_counted_from_the_start(tmp_path: Path) -> None:
    clock = Clock()
    root = tmp_path / "jobs"
    old = _job_folder(root, "from-before")
    folders = JobFolders(root, idle_s=600, worker="w1", clock=clock)
    assert folders.sweep([], force=True) == []
    clock.now += 601
    assert folders.sweep([], force=True) == ["from-before"]
    assert not old.exists()


def test_stale_temp_folders_are_swept_at_start(tmp_path: Path) -> None:
    root = tmp_path / "blender-tmp"
    (root / "blender-abc" / "blender_x1").mkdir(parents=True)
    (root / "blender-abc" / "blender_x1" / "render.exr").write_bytes(b"x" * 100)
    (root / "stray-file").write_bytes(b"y")
    assert sweep_temp_folders(root) == 2
    assert list(root.iterdir()) == []
    assert sweep_temp_folders(tmp_path / "never-made") == 0
