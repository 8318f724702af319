"""A whole farm on PostgreSQL: `flamenco up --database-url` makes its administrator and
tokens in that database and its Server runs on it; a job renders with real Blender, another
is canceled and requeued, and after the Server is killed and started again the jobs and their
frames are all still there and the farm renders on."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
import sqlalchemy

from farmkit import TestFarm, active_task, wait_until
from flamenco import wire
from pgkit import postgres_database
from upkit import UpFarm

pytestmark = pytest.mark.blender


def submit(farm: TestFarm, scene: Path, frames: str, chunk: str) -> str:
    done = farm.cli("submit", str(scene), "--frames", frames, "--chunk", chunk, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)["id"]


def frames_of(farm: TestFarm, job_id: str) -> list[wire.FrameInfo]:
    return farm.api().call("GET", f"/api/v1/jobs/{job_id}/frames", wire.FrameList).root


def act(farm: TestFarm, action: str, job_id: str) -> None:
    done = farm.cli("jobs", action, job_id)
    assert done.returncode == 0, done.stderr


def rows(url: str, query: str, **params: str) -> list[tuple]:
    """What the PostgreSQL database itself holds, read beside the farm."""
    engine = sqlalchemy.create_engine(url)
    try:
        with engine.connect() as conn:
            return [tuple(row) for row in conn.execute(sqlalchemy.text(query), params)]
    finally:
        engine.dispose()


@pytest.mark.timeout(900)
def test_a_whole_farm_runs_on_postgresql_and_keeps_its_jobs_across_a_server_restart(
    tmp_path: Path, demo_scene: Path, endless_scene: Path
) -> None:
    with postgres_database() as url, UpFarm(tmp_path, "--database-url", url) as up:
        up.wait_running()
        farm = up.test_farm()
        # The administrator up made, and its token that every call below uses, are in
        # PostgreSQL; no SQLite database was made beside it.
        assert rows(url, "SELECT name, is_admin FROM users") == [("admin", True)]
        assert not list(up.data_dir.rglob("server.sqlite*"))

        # Submit and render.
        rendered = submit(farm, demo_scene, "1-10", "5")
        job = farm.wait_job(rendered)
        assert job.status == "completed", farm.logs()
        frames = frames_of(farm, rendered)
        assert [f.frame for f in frames] == list(range(1, 11))
        files = {p.name: p.read_bytes() for p in Path(job.output_dir).iterdir()}
        assert sorted(files) == [f.filename for f in frames]
        assert rows(url, "SELECT status FROM jobs WHERE id = :id", id=rendered) == [("completed",)]
        assert rows(url, "SELECT count(*) FROM outputs WHERE job_id = :id", id=rendered) == [(10,)]

        # Control: a job canceled while it renders, requeued (it renders again), canceled.
        endless = submit(farm, endless_scene, "1-4", "1")
        wait_until(lambda: active_task(farm, endless), 120, f"a task of {endless} rendering")
        act(farm, "cancel", endless)
        wait_until(lambda: farm.job(endless).status == "canceled", 60, f"{endless} canceled")
        assert all(t.status == "canceled" for t in farm.tasks(endless))
        act(farm, "requeue", endless)
        wait_until(lambda: active_task(farm, endless), 120, f"{endless} rendering again")
        act(farm, "cancel", endless)
        wait_until(lambda: farm.job(endless).status == "canceled", 60, f"{endless} canceled again")
        endless_tasks = {t.id: t.status for t in farm.tasks(endless)}

        # Restart the Server: up starts it again on the same database.
        victim = up.children()["Server"]
        os.kill(victim, signal.SIGKILL)
        wait_until(
            lambda: up.children().get("Server") not in (None, victim), 60, "the Server again"
        )
        wait_until(lambda: up.answers(up.server_url), 60, "the restarted Server answering")

        # Everything is still there, for the same token.
        job = farm.job(rendered)
        assert job.status == "completed"
        assert frames_of(farm, rendered) == frames
        assert {p.name: p.read_bytes() for p in Path(job.output_dir).iterdir()} == files
        assert farm.job(endless).status == "canceled"
        assert {t.id: t.status for t in farm.tasks(endless)} == endless_tasks
        # And the farm renders on: its Manager and Worker work with the restarted Server.
        after = submit(farm, demo_scene, "1-2", "2")
        assert farm.wait_job(after).status == "completed", farm.logs()
        assert [f.frame for f in frames_of(farm, after)] == [1, 2]
        assert "Server started again" in up.output(), up.output()
        assert up.terminate() == 0, up.output()
