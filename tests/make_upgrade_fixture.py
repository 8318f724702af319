"""Make tests/data/upgrade-baseline/: a farm's data folders written by an older Flamenco.

Run once with the old code first on the path (see that folder's README), never by the tests:

    PYTHONPATH=OLD/src:OLD/tests .venv/bin/python -P tests/make_upgrade_fixture.py OUT

It runs a real farm (Server, the local Manager, one Worker, real Blender) and leaves:
a finished job with its frames; a job whose finished tasks' frames and updates wait in the
Manager's outbox because the Server was down; a queued job; the admin's token (farm.toml).
`expected.json` says what the upgrade test must find again.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import sys
import tempfile
from pathlib import Path

from farmkit import TestFarm, wait_until  # the old code's, from PYTHONPATH
from flamenco import wire
from flamenco.demo.scene import build_demo_scene
from flamenco.worker.blender import find_blender


def outbox_items(path: Path) -> list[tuple[str, dict]]:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return [(k, json.loads(p)) for k, p in db.execute("SELECT kind, payload FROM outbox")]
    finally:
        db.close()


def single_file(path: Path) -> None:
    """A stopped component's SQLite file with its write-ahead log folded in, as one file."""
    db = sqlite3.connect(path)
    try:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        db.execute("PRAGMA journal_mode=DELETE")
    finally:
        db.close()


def submit(farm: TestFarm, scene: Path, frames: str, name: str) -> str:
    done = farm.cli("submit", str(scene), "--frames", frames, "--chunk", "1", "--name", name)
    assert done.returncode == 0, done.stderr
    jobs = farm.api().call("GET", "/api/v1/jobs", wire.JobList).root
    return next(j.id for j in jobs if j.name == name)


def make(out: Path) -> None:
    work = Path(tempfile.mkdtemp(prefix="upgrade-fixture-"))
    scene = build_demo_scene(
        find_blender(None), work / "scene" / "anim.blend", frames=10, resolution=(96, 54),
        samples=4, user_resources=work / "user",
    )  # fmt: skip
    root = work / "farm"
    with TestFarm(root) as farm:
        farm.start_server()
        server = farm.procs[-1]
        farm.start_manager()
        farm.start_worker("w1")
        finished = submit(farm, scene, "1-3", "finished before the upgrade")
        assert farm.wait_job(finished).status == "completed", farm.logs()
        frames = farm.api().call("GET", f"/api/v1/jobs/{finished}/frames", wire.FrameList).root

        # The Server goes away while the Worker renders: what it finishes waits in the
        # Manager's outbox.
        waiting = submit(farm, scene, "4-9", "delivered after the upgrade")
        wait_until(
            lambda: any(t.status == "active" for t in farm.tasks(waiting)), 120, "a task active"
        )
        server.stop()
        outbox = root / "manager-local" / "outbox.sqlite"
        wait_until(
            lambda: any(i[1].get("status") == "completed" for i in outbox_items(outbox)),
            240,
            "a completed task in the Manager's outbox",
        )
        for proc in reversed(farm.procs[1:]):
            proc.stop()
        items = outbox_items(outbox)

        # Back without Manager or Worker: a new job stays queued.
        farm.restart(server)
        farm._wait_http(farm.server_url, farm.procs[-1])
        queued = submit(farm, scene, "1-2", "queued before the upgrade")
        assert farm.job(queued).status == "queued"
        farm.stop_all()

    out.mkdir(parents=True, exist_ok=True)
    shutil.copytree(root, out / "farm", ignore=shutil.ignore_patterns("logs", "*.log"))
    for path in (out / "farm").rglob("*.sqlite"):
        single_file(path)
    expected = {
        "finished": {"id": finished, "frames": {f.frame: f.sha256 for f in frames}},
        "waiting": {
            "id": waiting,
            "updates": [i[1] for i in items if i[0] == "update"],
            "frames": [i[1] for i in items if i[0] == "frame"],
        },
        "queued": {"id": queued},
    }
    (out / "expected.json").write_text(json.dumps(expected, indent=1) + "\n")
    shutil.rmtree(work)


if __name__ == "__main__":
    make(Path(sys.argv[1]))
