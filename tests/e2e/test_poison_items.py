"""One job's output the Server cannot write must not stall its site (real processes).

A Server whose data folder is deep: a frame named by a long output pattern (within the 200
bytes a pattern may have) no longer fits in PATH_MAX there, although the Worker wrote it
fine. The Server refuses that frame with a sentence; the Manager sets it aside and reports
the task as failed with that sentence, and the frames and completions of the other job of the
same site flow past it.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from farmkit import TestFarm
from flamenco import wire
from flamenco.blobs import sha256_file
from flamenco.db import sqlite_url

pytestmark = pytest.mark.blender

PATH_MAX = 4096
LONG_PATTERN = "long_" + "x" * 178 + "_######"  # 190 bytes: a pattern may have 200
REFUSED = "cannot be written: the file system refuses its name (File name too long)."


def _deep_folder(root: Path, length: int) -> Path:
    """A folder whose path is `length` characters long, of parts a file system takes."""
    folder = root
    while len(str(folder)) < length - 201:
        folder = folder / ("d" * 200)
    return folder / ("e" * (length - len(str(folder)) - 1))


def _submit_with_pattern(farm: TestFarm, scene: Path, name: str, pattern: str) -> str:
    """What the add-on does: the scene's blob, then the job with its output pattern."""
    api, sha = farm.api(), sha256_file(scene)
    missing = api.call(
        "POST", "/api/v1/blobs/missing", wire.BlobQueryResult, wire.BlobQuery(hashes=[sha])
    )
    if missing.missing:
        api.upload_blob(scene, sha)
    sub = wire.JobSubmission(
        name=name,
        files={scene.name: sha},
        settings={"blend": scene.name, "frames": "1", "output_pattern": pattern},
    )
    return api.call("POST", "/api/v1/jobs", wire.Job, sub).id


def _frames(farm: TestFarm, job_id: str) -> list[wire.FrameInfo]:
    return farm.api().call("GET", f"/api/v1/jobs/{job_id}/frames", wire.FrameList).root


def test_a_frame_the_server_cannot_write_fails_its_job_and_the_site_goes_on(
    farm: TestFarm, demo_scene: Path
) -> None:
    # Room in PATH_MAX for the job folders, a short file name and the Server's temporary
    # names (`.tmp-` and 32 hex digits), not for the long name.
    data_dir = _deep_folder(farm.root / "deep", PATH_MAX - 146)
    database = sqlite_url(farm.root / "server" / "server.sqlite")  # where bootstrap put it
    farm.start_server(data_dir=data_dir, env={"FLAMENCO_SERVER_DATABASE_URL": database})
    farm.start_manager()
    farm.start_worker("w-a")
    farm.start_worker("w-b")

    long_job = _submit_with_pattern(farm, demo_scene, "long", LONG_PATTERN)
    done = farm.cli("submit", str(demo_scene), "--frames", "1-4", "--name", "normal", "--json")
    assert done.returncode == 0, done.stderr
    normal_job = json.loads(done.stdout)["id"]

    normal = farm.wait_job(normal_job, timeout=240)
    assert normal.status == "completed", farm.logs()
    assert normal.frames_done == 4
    assert [f.frame for f in _frames(farm, normal_job)] == [1, 2, 3, 4]
    assert sorted(p.name for p in Path(normal.output_dir).iterdir()) == [
        f"frame_{n:06d}.png" for n in (1, 2, 3, 4)
    ]

    failed = farm.wait_job(long_job, timeout=240)
    assert failed.status == "failed", farm.logs()
    assert failed.frames_done == 0 and _frames(farm, long_job) == []
    output_dir = Path(failed.output_dir)
    assert not output_dir.exists() or list(output_dir.iterdir()) == []  # nor a temporary file
    (task,) = farm.tasks(long_job)
    assert task.failure_count == 3  # tried again, as any failure, then failed for good
    log = farm.api().request("GET", f"/api/v1/jobs/{long_job}/tasks/{task.id}/log").text
    failures = [line for line in log.splitlines() if line.startswith("ERROR:")]
    assert len(failures) == 3, log
    for line in failures:
        assert line.startswith("ERROR: Frame 1 ('long_xxxx"), line
        assert "was refused: Frame 1 ('long_xxxx" in line and REFUSED in line, line

    manager = farm.managers["local"]
    headers = {"Authorization": f"Bearer {manager.token}"}
    status = httpx.get(f"{manager.url}/api/v1/status", headers=headers, timeout=5).json()
    assert (status["set_aside"], status["outbox"]) == (3, 0)  # the frame of each try
    assert "set aside, the queue goes on" in manager.proc.output()
    assert "Traceback" not in farm.procs[0].output()  # the Server answered, it did not crash
