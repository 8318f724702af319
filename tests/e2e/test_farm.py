"""The whole farm as separate processes: Server, Manager, Workers, real Blender, real sockets."""

from __future__ import annotations

import itertools
import json
from collections import defaultdict
from pathlib import Path

import pytest
from PIL import Image, ImageChops, ImageStat

from farmkit import DEMO_FRAMES, DEMO_RESOLUTION, TestFarm

pytestmark = pytest.mark.blender


def _png_frames(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.png"))


def test_two_workers_render_a_chunked_job_end_to_end(
    farm: TestFarm, demo_scene: Path, tmp_path: Path
) -> None:
    farm.start_server()
    farm.start_manager()
    farm.start_worker("worker-a")
    farm.start_worker("worker-b")

    done = farm.cli(
        "submit",
        str(demo_scene),
        "--frames",
        f"1-{DEMO_FRAMES}",
        "--chunk",
        "3",
        "--name",
        "e2e",
        "--wait",
        "--json",
    )
    assert done.returncode == 0, done.stderr + farm.logs()
    job = json.loads(done.stdout)  # stdout carries the JSON document only
    assert job["status"] == "completed"
    assert job["frames_done"] == DEMO_FRAMES

    tasks = farm.tasks(job["id"])
    assert [t.frames for t in tasks] == [[1, 2, 3], [4, 5, 6], [7, 8, 9], [10]]
    assert all(t.status == "completed" for t in tasks)

    dest = tmp_path / "frames"
    fetched = farm.cli("jobs", "download", job["id"], str(dest))
    assert fetched.returncode == 0, fetched.stderr
    files = _png_frames(dest)
    assert [f.name for f in files] == [f"frame_{n:06d}.png" for n in range(1, DEMO_FRAMES + 1)]

    images = [Image.open(f) for f in files]
    for image in images:
        assert image.format == "PNG"
        assert image.size == DEMO_RESOLUTION
        extrema = ImageStat.Stat(image.convert("L")).extrema[0]
        assert extrema[1] - extrema[0] > 20, "frame is blank"
    for before, after in itertools.pairwise(images):
        diff = ImageChops.difference(before.convert("RGB"), after.convert("RGB"))
        assert diff.getbbox() is not None, "consecutive frames are identical"

    # The Server also keeps them as plain files in the job's output folder.
    assert len(_png_frames(Path(job["output_dir"]))) == DEMO_FRAMES


def test_one_warm_blender_renders_every_task_of_a_job_on_a_worker(
    farm: TestFarm, demo_scene: Path
) -> None:
    farm.start_server()
    farm.start_manager()
    worker = farm.start_worker("solo")

    submitted = farm.cli("submit", str(demo_scene), "--frames", "1-8", "--chunk", "2", "--json")
    assert submitted.returncode == 0, submitted.stderr
    job_id = json.loads(submitted.stdout)["id"]
    assert farm.wait_job(job_id).status == "completed", farm.logs()

    tasks = farm.tasks(job_id)
    assert len(tasks) == 4
    pids_by_worker: dict[str, set[int | None]] = defaultdict(set)
    for task in tasks:
        pids_by_worker[task.worker or ""].add(task.blender_pid)
    assert list(pids_by_worker) == ["solo"]
    (pids,) = pids_by_worker.values()
    assert len(pids) == 1 and None not in pids, pids
    (pid,) = pids
    assert pid != worker.pid  # Blender is a child process, kept warm between tasks


def test_jobs_show_and_list_speak_json_and_name_the_output_folder(
    farm: TestFarm, demo_scene: Path
) -> None:
    farm.start_server()
    submitted = farm.cli("submit", str(demo_scene), "--frames", "1-3", "--name", "listed", "--json")
    assert submitted.returncode == 0, submitted.stderr
    job = json.loads(submitted.stdout)
    assert job["status"] == "queued" and job["name"] == "listed"

    listed = farm.cli("jobs", "list", "--json")
    assert [j["id"] for j in json.loads(listed.stdout)] == [job["id"]]
    shown = json.loads(farm.cli("jobs", "show", job["id"], "--json").stdout)
    assert shown["output_dir"].endswith(job["id"])
    assert [t["frames"] for t in shown["tasks"]] == [[1], [2], [3]]
    human = farm.cli("jobs", "show", job["id"])
    assert shown["output_dir"] in human.stdout.replace("\n", "")
