"""No job hangs silently: a job nobody may run says why and runs again after an unblock or a
requeue; a file that cannot render fails its job at once; a site hands back what it cannot run.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from farmkit import TestFarm, wait_until
from flamenco import wire
from testdata import CORPUS

pytestmark = pytest.mark.blender

BLOCKED = (
    "Waiting: every Worker that could run it failed it too often ({}); "
    "fix them, then unblock or requeue the job, or add Workers."
)
NO_CAMERA = CORPUS / "basic_file.blend"  # a real file without a camera (see its README)


def flaky_blender(folder: Path, fail_after_s: float = 0.0) -> tuple[Path, Path]:
    """A Blender executable that fails (after `fail_after_s`) while its flag file exists, and
    is the real Blender (the bpy module of this Python) otherwise. Returns (executable, flag)."""
    folder.mkdir(parents=True, exist_ok=True)
    flag = folder / "broken"
    path = folder / "blender"
    path.write_text(
        "#!/bin/sh\n"
        '[ "$1" = "--version" ] && { echo "Blender 5.0.1"; exit 0; }\n'
        f'[ -e "{flag}" ] && {{ sleep {fail_after_s}; echo "Error: this Blender is broken on '
        'purpose"; exit 1; }\n'
        # Blender's own arguments up to "--python SCRIPT --": bpy runs the script directly.
        'while [ "$1" != "--python" ]; do shift; done\n'
        'script="$2"; shift 3\n'
        f'exec "{sys.executable}" -P "$script" "$@"\n'
    )
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    flag.touch()
    return path, flag


def submit(farm: TestFarm, scene: Path, *args: str) -> str:
    done = farm.cli("submit", str(scene), "--json", *args)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)["id"]


def submit_waiting(farm: TestFarm, scene: Path, log: Path, *args: str) -> subprocess.Popen:
    """`flamenco submit --wait` running in the background, its stderr going to `log`."""
    env = {
        **os.environ,
        "XDG_CONFIG_HOME": str(farm.config_home),
        "FLAMENCO_SERVER": farm.server_url,
        "FLAMENCO_TOKEN": farm.token,
        "COLUMNS": "200",
    }
    with log.open("wb") as sink:
        return subprocess.Popen(
            [sys.executable, "-m", "flamenco", "submit", str(scene), "--wait", *args],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=sink,
        )


def history(farm: TestFarm, job_id: str) -> list[wire.TaskEvent]:
    return farm.api().call("GET", f"/api/v1/jobs/{job_id}/history", wire.TaskEventList).root


def test_a_job_whose_only_worker_is_blocklisted_says_why_and_runs_after_unblock_or_requeue(
    farm: TestFarm, demo_scene: Path, tmp_path: Path
) -> None:
    blender, broken = flaky_blender(tmp_path / "flaky")
    farm.start_server()
    farm.start_manager()
    farm.start_worker("solo", env={"FLAMENCO_WORKER_BLENDER": str(blender)})
    reason = BLOCKED.format("solo")

    job_id = submit(farm, demo_scene, "--frames", "1-4")
    wait_until(lambda: farm.job(job_id).waiting_reason == reason, 60, "the job to say why")
    shown = farm.cli("jobs", "show", job_id).stdout.replace("\n", " ")
    assert reason in shown and "this Blender is broken on purpose" in shown
    assert farm.job(job_id).status == "active"

    broken.unlink()  # the Worker is fixed
    unblocked = farm.cli("jobs", "unblock", job_id, "solo")
    assert unblocked.returncode == 0, unblocked.stderr
    assert "kept off it now: none" in unblocked.stderr
    assert farm.wait_job(job_id).status == "completed", farm.logs()
    assert farm.job(job_id).frames_done == 4

    # Broken again: `submit --wait` prints why the job waits, and a requeue lets it finish.
    broken.touch()
    log = tmp_path / "submit.log"
    waiting = submit_waiting(farm, demo_scene, log, "--frames", "1-4")
    try:
        wait_until(lambda: reason in log.read_text(), 90, "submit --wait to print the reason")
        assert "Last error: " in log.read_text()
        job = farm.api().call("GET", "/api/v1/jobs", wire.JobList).root[0]  # the newest
        broken.unlink()
        requeued = farm.cli("jobs", "requeue", job.id)
        assert requeued.returncode == 0, requeued.stderr
        assert waiting.wait(240) == 0, log.read_text()
    finally:
        if waiting.poll() is None:
            waiting.kill()
            waiting.wait()
    assert farm.job(job.id).status == "completed" and farm.job(job.id).blocklist == []


def test_a_file_without_a_camera_fails_its_job_at_once_and_blocklists_nobody(
    farm: TestFarm,
) -> None:
    farm.start_server()
    farm.start_manager()
    farm.start_worker("w-a")
    farm.start_worker("w-b")
    wait_until(
        lambda: (
            len(farm.api().call("GET", "/api/v1/managers", wire.ManagerList).root[0].workers) == 2
        ),
        60,
        "both Workers registered",
    )
    done = farm.cli("submit", str(NO_CAMERA), "--frames", "1-6", "--wait", timeout=120)
    assert done.returncode == 1, done.stderr
    assert "Last error: Cannot render, no camera" in done.stderr
    (job,) = farm.api().call("GET", "/api/v1/jobs", wire.JobList).root
    assert (job.status, job.last_error, job.blocklist) == (
        "failed",
        "Cannot render, no camera",
        [],
    )
    # Failed once, not retried until each Worker is blocklisted (3 failures each); reports of
    # tasks the failed job had already canceled are recorded as ignored.
    failures = [e for e in history(farm, job.id) if e.status == "failed" and e.outcome == "applied"]
    assert 1 <= len(failures) < 3, failures
    assert "Last error: Cannot render, no camera" in farm.cli("jobs", "show", job.id).stdout


def test_a_site_hands_back_the_tasks_none_of_its_workers_may_run(
    farm: TestFarm, slow_scene: Path, tmp_path: Path
) -> None:
    # Broken for good, and slow to say so: failing at once, the Worker would run through every
    # task its site holds before the Server's blocklist reached the site, leaving none to hand
    # back.
    blender, _ = flaky_blender(tmp_path / "flaky", fail_after_s=1.0)
    farm.start_server()
    farm.start_manager("site-a", env={"FLAMENCO_MANAGER_PREFETCH": "4"})
    farm.start_manager("site-b")
    farm.start_worker("broken-a", manager="site-a", env={"FLAMENCO_WORKER_BLENDER": str(blender)})
    wait_until(
        lambda: any(
            m.name == "site-a" and m.workers
            for m in farm.api().call("GET", "/api/v1/managers", wire.ManagerList).root
        ),
        60,
        "the Worker of site-a",
    )

    job_id = submit(farm, slow_scene, "--frames", "1-8")
    # Site A alone has a Worker, so it leases its one task plus four queued ahead; once that
    # Worker is kept off the job, A hands the rest back. Only then does site B get a Worker,
    # which renders them all: the job does not wait for A for ever.
    wait_until(
        lambda: (
            farm.api().call("GET", f"/api/v1/jobs/{job_id}", wire.Job).blocklist == ["broken-a"]
        ),
        120,
        "broken-a kept off the job",
    )
    farm.start_worker("good-b", manager="site-b")
    job = farm.wait_job(job_id, timeout=300)
    assert job.status == "completed", farm.logs()
    assert job.blocklist == ["broken-a"]
    assert {t.worker for t in farm.tasks(job_id)} == {"good-b"}
    handed_back = [
        e for e in history(farm, job_id) if e.status == "queued" and e.manager == "site-a"
    ]
    assert handed_back and all(e.worker is None for e in handed_back), history(farm, job_id)
