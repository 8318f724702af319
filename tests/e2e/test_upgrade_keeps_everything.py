"""An upgrade keeps everything: a farm's data folders written by an older Flamenco (before
migrations existed; tests/data/upgrade-baseline, made by tests/make_upgrade_fixture.py) are
started by this one, with real processes, real Blender and real SQLite files."""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from farmkit import TestFarm, wait_until
from flamenco import wire
from flamenco.manager.store import MIGRATIONS as MANAGER_STORE_MIGRATIONS
from flamenco.outbox import MIGRATIONS as OUTBOX_MIGRATIONS
from flamenco.server.schema import BASELINE, head_revision

FIXTURE = Path(__file__).parents[1] / "data" / "upgrade-baseline"


def sqlite_rows(path: Path, sql: str) -> list[tuple]:
    db = sqlite3.connect(path)
    try:
        return db.execute(sql).fetchall()
    finally:
        db.close()


def renew_leases(server_db: Path) -> None:
    """The farm is down only for the upgrade, within its Manager's lease; the fixture was made
    long before this run, so its leases are moved to end a while from now (in the old schema,
    before anything reads it). Nothing else in the data is touched."""
    later = (datetime.now(UTC) + timedelta(minutes=10)).strftime("%Y-%m-%d %H:%M:%S.%f")
    db = sqlite3.connect(server_db)
    try:
        with db:
            db.execute(
                "UPDATE tasks SET lease_expires = ? WHERE lease_expires IS NOT NULL", (later,)
            )
    finally:
        db.close()


def frame_bytes(farm: TestFarm, job_id: str, frame: int) -> bytes:
    answer = httpx.get(
        f"{farm.server_url}/api/v1/jobs/{job_id}/frames/{frame}",
        headers={"Authorization": f"Bearer {farm.token}"},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    return answer.content


def test_an_upgrade_keeps_every_job_frame_token_and_outbox_item(
    tmp_path: Path, demo_scene: Path
) -> None:
    expected = json.loads((FIXTURE / "expected.json").read_text())
    root = tmp_path / "farm"
    shutil.copytree(FIXTURE / "farm", root)
    server_db = root / "server" / "server.sqlite"
    tables = {r[0] for r in sqlite_rows(server_db, "SELECT name FROM sqlite_master")}
    assert "alembic_version" not in tables  # made before migrations existed
    renew_leases(server_db)
    finished, waiting, queued = expected["finished"], expected["waiting"], expected["queued"]
    assert waiting["updates"] and waiting["frames"], "the fixture's outbox holds items"

    with TestFarm(root) as farm:
        farm.start_server()  # farm.toml: the admin and tokens from before

        assert sqlite_rows(server_db, "SELECT version_num FROM alembic_version") == [
            (head_revision(),)
        ]
        (copy,) = (root / "server").glob("server.sqlite.before-*")
        assert sqlite_rows(copy, "SELECT count(*) FROM jobs") == [(3,)]
        assert "alembic_version" not in {
            r[0] for r in sqlite_rows(copy, "SELECT name FROM sqlite_master")
        }
        log = farm.procs[-1].output()
        assert f"Upgraded the database from revision {BASELINE} (recognised" in log

        # Tokens: the admin's token from before still works, and is listed.
        listed = farm.cli("tokens", "list", "--json")
        assert listed.returncode == 0, listed.stderr
        tokens = json.loads(listed.stdout)
        assert [(t["user"], t["label"], t["current"], t["expires"]) for t in tokens] == [
            ("admin", "flamenco up", True, None)
        ]

        # The finished job and its frames, byte for byte.
        job = farm.job(finished["id"])
        assert job.status == "completed"
        frames = (
            farm.api().call("GET", f"/api/v1/jobs/{finished['id']}/frames", wire.FrameList).root
        )
        assert {str(f.frame): f.sha256 for f in frames} == finished["frames"]
        for frame in frames:
            data = frame_bytes(farm, finished["id"], frame.frame)
            assert hashlib.sha256(data).hexdigest() == frame.sha256

        # The queued job waits, as it did.
        assert farm.job(queued["id"]).status == "queued"

        # The Manager from before: its store and outbox upgraded, the outbox delivered.
        farm.start_manager()
        manager_dir = root / "manager-local"
        for store, migrations in (
            ("manager.sqlite", MANAGER_STORE_MIGRATIONS),
            ("outbox.sqlite", OUTBOX_MIGRATIONS),
        ):
            assert sqlite_rows(manager_dir / store, "PRAGMA user_version") == [(len(migrations),)]

        def history() -> list[wire.TaskEvent]:
            path = f"/api/v1/jobs/{waiting['id']}/history"
            return farm.api().call("GET", path, wire.TaskEventList).root

        def delivered() -> bool:
            frames = (
                farm.api().call("GET", f"/api/v1/jobs/{waiting['id']}/frames", wire.FrameList).root
            )
            return {(f.task_id, f.frame) for f in frames} >= {
                (i["task_id"], i["frame"]) for i in waiting["frames"]
            }

        def reported() -> set[tuple[str, str, str]]:
            return {(e.task_id, e.status, e.outcome) for e in history()}

        # The outbox sends its frames before the updates behind them: wait for both.
        statuses = {
            (u["task_id"], u["status"], "applied") for u in waiting["updates"] if u.get("status")
        }
        wait_until(
            lambda: delivered() and statuses <= reported(),
            120,
            "the Manager's outbox frames and updates on the Server",
        )

        # And the farm renders: the jobs from before and a new one.
        farm.start_worker("w1")
        for job_id in (waiting["id"], queued["id"]):
            assert farm.wait_job(job_id, timeout=300).status == "completed", farm.logs()
        submitted = farm.cli("submit", str(demo_scene), "--frames", "1-2", "--json")
        assert submitted.returncode == 0, submitted.stderr
        new_job = json.loads(submitted.stdout)["id"]
        assert farm.wait_job(new_job, timeout=300).status == "completed", farm.logs()
        new_frames = farm.api().call("GET", f"/api/v1/jobs/{new_job}/frames", wire.FrameList)
        assert [f.frame for f in new_frames.root] == [1, 2]
