"""`flamenco jobs watch` and `submit --wait` follow the Server's event stream: they end as soon
as the job does, with 0 completed, 1 failed, 2 canceled, and survive a Server restart."""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from farmkit import TestFarm, wait_until
from testdata import CORPUS

pytestmark = pytest.mark.blender

NO_CAMERA = CORPUS / "basic_file.blend"  # a real file without a camera (see its README)
PROGRESS_LINE = re.compile(r"^job \S+ [a-z-]+: \d+/\d+ frames, \d+/\d+ tasks, \d+%$", re.M)


def submit(farm: TestFarm, scene: Path, *args: str) -> str:
    done = farm.cli("submit", str(scene), "--json", *args)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)["id"]


@contextlib.contextmanager
def watching(farm: TestFarm, job_id: str, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`flamenco jobs watch JOB` in the background: stdout to log.out, stderr to `log`
    (not a terminal: plain progress lines). Killed at the end if it is still running."""
    env = {
        **os.environ,
        "XDG_CONFIG_HOME": str(farm.config_home),
        "FLAMENCO_SERVER": farm.server_url,
        "FLAMENCO_TOKEN": farm.token,
        "COLUMNS": "200",
    }
    with log.open("wb") as sink, log.with_suffix(".out").open("wb") as out:
        watch = subprocess.Popen(
            [sys.executable, "-m", "flamenco", "jobs", "watch", job_id],
            env=env,
            stdout=out,
            stderr=sink,
        )
        try:
            yield watch
        finally:
            if watch.poll() is None:
                watch.kill()
            watch.wait()


def start_farm(farm: TestFarm, workers: int = 1) -> None:
    farm.start_server()
    farm.start_manager()
    for n in range(workers):
        farm.start_worker(f"w{n}")


def test_watch_of_a_rendering_job_exits_0_with_its_frames_right_after_the_end(
    farm: TestFarm, slow_scene: Path, tmp_path: Path
) -> None:
    start_farm(farm)
    job_id = submit(farm, slow_scene, "--frames", "1-8", "--chunk", "2")
    log = tmp_path / "watch.log"
    started = time.monotonic()
    with watching(farm, job_id, log) as watch:
        code = watch.wait(240)
        exited_at = time.time()
    watched_s = time.monotonic() - started
    job = farm.job(job_id)
    assert (code, job.status) == (0, "completed"), log.read_text() + farm.logs()
    out = log.with_suffix(".out").read_text()
    assert f"({job_id}) completed, 8/8 frames" in out
    # The end is seen from the event the Server sends when it records it, not from a poll.
    # (The target is 50 ms, measured by bench/farm_overhead.py; a loaded CI box gets slack.)
    lag = exited_at - job.updated.timestamp()
    assert 0 <= lag < 0.5, lag
    # Not a terminal: a line per change at most once a second (and the last one at once).
    lines = PROGRESS_LINE.findall(log.read_text())
    assert lines[-1] == f"job {job_id} completed: 8/8 frames, 4/4 tasks, 100%"
    assert len(lines) <= watched_s + 2, lines


def test_watch_of_a_failing_job_exits_1_and_says_why(farm: TestFarm, tmp_path: Path) -> None:
    start_farm(farm)
    job_id = submit(farm, NO_CAMERA, "--frames", "1-4")
    log = tmp_path / "watch.log"
    with watching(farm, job_id, log) as watch:
        code = watch.wait(120)
    assert code == 1, log.read_text() + farm.logs()
    assert farm.job(job_id).status == "failed"
    assert "Last error: Cannot render, no camera" in log.read_text()
    assert f"({job_id}) failed" in log.with_suffix(".out").read_text()


def test_watch_of_a_job_canceled_by_another_cli_exits_2_and_an_unknown_job_is_refused(
    farm: TestFarm, endless_scene: Path, tmp_path: Path
) -> None:
    start_farm(farm)
    job_id = submit(farm, endless_scene, "--frames", "1-2")
    log = tmp_path / "watch.log"
    with watching(farm, job_id, log) as watch:
        wait_until(lambda: " active: " in log.read_text(), 120, "the watch to show it active")
        canceled = farm.cli("jobs", "cancel", job_id)
        assert canceled.returncode == 0, canceled.stderr
        code = watch.wait(120)
    assert code == 2, log.read_text() + farm.logs()
    assert farm.job(job_id).status == "canceled"

    unknown = farm.cli("jobs", "watch", "no-such-job")
    assert unknown.returncode == 1
    assert unknown.stderr.strip() == "Error (404): There is no job with id 'no-such-job'."


def test_watch_reconnects_when_the_server_restarts_and_sees_the_end(
    farm: TestFarm, slow_scene: Path, tmp_path: Path
) -> None:
    start_farm(farm)
    job_id = submit(farm, slow_scene, "--frames", "1-8")
    log = tmp_path / "watch.log"
    with watching(farm, job_id, log) as watch:
        wait_until(lambda: " active: " in log.read_text(), 120, "the watch to show it active")
        server = farm.procs[0]
        server.stop()  # the stream drops mid-job; the Manager keeps what its Worker reports
        assert watch.poll() is None, log.read_text()
        wait_until(lambda: "reconnecting in" in log.read_text(), 30, "the watch to reconnect")
        farm.restart(server)
        code = watch.wait(240)
    assert (code, farm.job(job_id).status) == (0, "completed"), log.read_text() + farm.logs()
    text = log.read_text()
    assert f"The event stream of job {job_id} dropped (" in text
    assert "8/8 frames" in log.with_suffix(".out").read_text()


def test_submit_wait_exits_2_when_the_job_is_canceled(
    farm: TestFarm, endless_scene: Path, tmp_path: Path
) -> None:
    start_farm(farm)
    env = {
        **os.environ,
        "XDG_CONFIG_HOME": str(farm.config_home),
        "FLAMENCO_SERVER": farm.server_url,
        "FLAMENCO_TOKEN": farm.token,
    }
    log = tmp_path / "submit.log"
    command = ["submit", str(endless_scene), "--frames", "1", "--wait", "--json"]
    with log.open("wb") as sink:
        waiting = subprocess.Popen(
            [sys.executable, "-m", "flamenco", *command],
            env=env,
            stdout=subprocess.PIPE,
            stderr=sink,
        )
    try:
        match = wait_until(
            lambda: re.search(r"Submitted job (\S+) ", log.read_text()), 120, "the job's id"
        )
        canceled = farm.cli("jobs", "cancel", match.group(1))
        assert canceled.returncode == 0, canceled.stderr
        stdout, _ = waiting.communicate(timeout=120)
    finally:
        if waiting.poll() is None:
            waiting.kill()
            waiting.wait()
    assert waiting.returncode == 2, log.read_text()
    assert json.loads(stdout)["status"] == "canceled"
