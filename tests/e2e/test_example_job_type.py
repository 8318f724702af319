"""A studio's own job type and command, from a pip-installable package (tests/data/
example_job_type), run through a real farm: installed with `pip --target` into a folder that
only the farm's processes see (PYTHONPATH), listed by the Server, compiled at submit, run by
the Worker's command, its frames and job file stored on the Server. A Worker without the
package is never given its tasks: Workers say which commands they have."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

from PIL import Image

from farmkit import TestFarm, wait_until
from flamenco import wire

PACKAGE = Path(__file__).parents[1] / "data" / "example_job_type"
PIP_INSTALL = [sys.executable, "-m", "pip", "install", "--no-deps", "-q"]
FRAMES = [1, 2, 3, 4, 5]
SIZE = 12


def _install(tmp_path: Path) -> Path:
    """The package installed into a folder of its own; a copy is built, so that no build
    output lands in the test data."""
    source, site = tmp_path / "package", tmp_path / "site"
    shutil.copytree(PACKAGE, source)
    done = subprocess.run(
        # No build isolation: the test extra's setuptools builds it, without an index.
        [
            *PIP_INSTALL,
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "--target",
            str(site),
            str(source),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return site


def _shade(frame: int) -> tuple[int, int, int]:
    """The example command's colour of `frame` for #80a0c0 (8 steps darker a frame)."""
    step = 8 * (frame - 1)
    return (0x80 - step, 0xA0 - step, 0xC0 - step)


def test_a_job_type_from_a_package_runs_through_the_farm(farm: TestFarm, tmp_path: Path) -> None:
    site = _install(tmp_path)
    with_package = {"PYTHONPATH": str(site)}
    farm.start_server(env=with_package)
    farm.start_manager(env=with_package)
    # A Worker without the package first: it says which commands it has, so the job's tasks
    # are never given to it; the job waits saying why.
    farm.start_worker("worker-plain")

    listed = {t["name"]: t for t in farm.api().request("GET", "/api/v1/job-types").json()}
    assert {"blender-render", "blender-script", "swatches"} <= set(listed)
    assert listed["swatches"]["label"] == "Colour swatches"
    assert set(listed["swatches"]["settings_schema"]["properties"]) == {
        "frames",
        "chunk",
        "size",
        "colour",
    }

    submission = wire.JobSubmission(
        name="swatches",
        type="swatches",
        files={},
        settings={"frames": "1-5", "chunk": 2, "size": SIZE, "colour": "#80a0c0"},
    )
    job = farm.api().call("POST", "/api/v1/jobs", wire.Job, submission)
    waiting = wait_until(
        # (first it waits for worker-plain to come online)
        lambda: "command" in ((seen := farm.job(job.id)).waiting_reason or "") and seen,
        60,
        "the job to wait for a Worker with its command",
    )
    assert waiting.waiting_reason == (
        "Waiting: the job needs a Worker with the command 'swatch', and no Worker online has that."
    )
    farm.start_worker("worker-a", env=with_package)
    job = farm.wait_job(job.id)
    assert job.status == "completed", farm.logs()
    assert job.frames_done == len(FRAMES)
    tasks = farm.tasks(job.id)
    assert {(t.worker, t.failure_count) for t in tasks} == {("worker-a", 0)}
    assert [(t.type, t.frames) for t in tasks] == [
        ("swatch", [1, 2]),
        ("swatch", [3, 4]),
        ("swatch", [5]),
    ]

    frames = farm.api().call("GET", f"/api/v1/jobs/{job.id}/frames", wire.FrameList).root
    assert [f.frame for f in frames] == FRAMES
    for frame in FRAMES:
        with Image.open(Path(job.output_dir) / f"swatch_{frame:04d}.png") as image:
            assert image.size == (SIZE, SIZE)
            assert image.getcolors() == [(SIZE * SIZE, _shade(frame))]

    artifacts = farm.api().call("GET", f"/api/v1/jobs/{job.id}/artifacts", wire.ArtifactList).root
    by_name = {a.name: a for a in artifacts}
    assert sorted(by_name) == ["swatches/0001.txt", "swatches/0003.txt", "swatches/0005.txt"]
    listing = b"swatch_0003.png\nswatch_0004.png\n"
    assert by_name["swatches/0003.txt"].sha256 == hashlib.sha256(listing).hexdigest()
    assert (Path(job.output_dir) / "swatches" / "0003.txt").read_bytes() == listing
    log = farm.api().request("GET", f"/api/v1/jobs/{job.id}/tasks/{tasks[1].id}/log").text
    assert f"frame 4: {_shade(4)}" in log, log
