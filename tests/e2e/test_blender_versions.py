"""A Worker with several Blenders: it offers them all, renders each file with the Blender
closest to the one that saved it, and a file newer than any Blender online waits, saying so.

The older Blenders are the bpy 4.2 and 4.5 wheels in .venv-bpy42 and .venv-bpy45, which
./scripts/test creates; without them these tests fail and say how to make them.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from farmkit import TestFarm, wait_until
from flamenco import wire
from flamenco.blendfile import blend_version_text
from flamenco.demo.scene import build_demo_scene
from flamenco.worker.blender import install_at

pytestmark = pytest.mark.blender

ROOT = Path(__file__).resolve().parents[2]


def bpy_runtime(venv: str) -> str:
    python = ROOT / venv / "bin" / "python"
    if not python.is_file():
        pytest.fail(f"{python} is missing: run ./scripts/test once, which creates {venv}.")
    return str(python)


@pytest.fixture(scope="module")
def bpy42() -> str:
    return bpy_runtime(".venv-bpy42")


@pytest.fixture(scope="module")
def bpy45() -> str:
    return bpy_runtime(".venv-bpy45")


def workers(farm: TestFarm) -> list[wire.WorkerSummary]:
    return [
        w
        for m in farm.api().call("GET", "/api/v1/managers", wire.ManagerList).root
        for w in m.workers
    ]


def submit(farm: TestFarm, scene: Path, *flags: str) -> str:
    done = farm.cli("submit", str(scene), "--frames", "1-2", *flags)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_a_worker_offers_every_blender_and_renders_a_4_2_file_with_4_2(
    farm: TestFarm, bpy42: str, bpy45: str, tmp_path: Path
) -> None:
    scene = build_demo_scene(
        install_at(bpy42),
        tmp_path / "saved-by-4.2" / "shot.blend",
        frames=2,
        resolution=(32, 24),
        samples=2,
        user_resources=tmp_path / "user",
    )
    assert blend_version_text(scene) == "4.2"
    farm.start_server()
    farm.start_manager()
    worker = farm.start_worker(
        "many", args=["--blender", bpy42, "--blender", bpy45, "--blender", sys.executable]
    )

    def offered() -> list[str] | None:
        return next((w.blender_versions for w in workers(farm) if w.name == "many"), None)

    versions = wait_until(offered, 120, "the Worker's Blender versions at the Server")
    assert [v.rsplit(".", 1)[0] for v in versions] == ["4.2", "4.5", "5.0"]
    assert "offering Blender 4.2." in worker.output()

    job_id = submit(farm, scene)
    assert farm.job(job_id).settings["min_blender_version"] == "4.2"  # from the file's header
    job = farm.wait_job(job_id)
    assert job.status == "completed", farm.logs()
    for task in farm.tasks(job_id):
        log = farm.api().request("GET", f"/api/v1/jobs/{job_id}/tasks/{task.id}/log").text
        assert f"rendering with Blender {versions[0]} ({bpy42})" in log


def test_a_5_0_file_waits_on_a_farm_whose_only_worker_has_4_5(
    farm: TestFarm, bpy45: str, demo_scene: Path
) -> None:
    farm.start_server()
    farm.start_manager()
    farm.start_worker("old", args=["--blender", bpy45])
    wait_until(lambda: workers(farm), 120, "the Worker at the Server")

    job_id = submit(farm, demo_scene)
    reason = wait_until(lambda: farm.job(job_id).waiting_reason, 60, "the job's waiting reason")
    version45 = workers(farm)[0].blender_versions[0]
    assert version45.startswith("4.5.")
    assert reason == (
        "Waiting: the job needs Blender 5.0 or newer, "
        f"and the Workers online have Blender {version45}."
    )
    assert farm.job(job_id).status == "queued"


FLAMENCO = [sys.executable, "-m", "flamenco"]


@pytest.mark.parametrize(
    ("blender", "sentence"),
    [
        (
            str(Path(sys.base_prefix) / "bin" / "python3.11"),
            "is a Python that cannot import the bpy module; install bpy into it",
        ),
        ("/nonexistent/blender", "is not an executable file; give a Blender executable"),
    ],
)
def test_a_worker_given_a_bad_blender_exits_with_one_sentence(
    tmp_path: Path, blender: str, sentence: str
) -> None:
    done = subprocess.run(
        # A Manager URL, so that the Worker checks its Blender instead of looking for one.
        [*FLAMENCO, "worker", "--manager", "http://127.0.0.1:9", "--blender", blender],
        env={
            **os.environ,
            "XDG_CONFIG_HOME": str(tmp_path),
            "FLAMENCO_WORKER_DATA_DIR": str(tmp_path / "w"),
            "COLUMNS": "1000",  # one line, unwrapped
        },
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    error = [line for line in done.stderr.splitlines() if line.startswith("Error:")]
    assert len(error) == 1 and sentence in error[0], done.stderr
