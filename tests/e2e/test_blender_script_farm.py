"""blender-script through a real farm: the script runs in the job's file on a Worker's
Blender, the files it lists reach the Server with their bytes under their job-relative
names, and a script that raises or lists a missing file fails the job with one sentence."""

from __future__ import annotations

import hashlib
from pathlib import Path

import httpx
import pytest

from farmkit import TestFarm
from flamenco import wire

pytestmark = pytest.mark.blender
FORM = {"content-type": "application/x-www-form-urlencoded"}

BAKES = """
import os
import bpy

frame = bpy.context.scene.frame_current
os.makedirs("cache", exist_ok=True)
path = os.path.join("cache", f"fluid_{frame:04d}.txt")
with open(path, "w") as out:
    out.write(f"{' '.join(FLAMENCO_ARGS)} frame {frame} of {os.path.basename(bpy.data.filepath)}")
FLAMENCO_OUTPUTS.append(path)
"""

RAISES = """
raise RuntimeError("no domain object to bake")
"""

LISTS_A_MISSING_FILE = """
FLAMENCO_OUTPUTS.append("cache/never_written.vdb")
"""


def _submit(farm: TestFarm, scene: Path, script: str, tmp_path: Path, **settings: object) -> str:
    script_file = tmp_path / f"script-{len(list(tmp_path.iterdir()))}.py"
    script_file.write_text(script)
    files = {}
    for relpath, path in (("shot/scene.blend", scene), ("scripts/bake.py", script_file)):
        sha = hashlib.sha256(path.read_bytes()).hexdigest()
        farm.api().upload_blob(path, sha)
        files[relpath] = sha
    submission = wire.JobSubmission(
        name="bake",
        type="blender-script",
        files=files,
        settings={"blend": "shot/scene.blend", "script": "scripts/bake.py", **settings},
    )
    return farm.api().call("POST", "/api/v1/jobs", wire.Job, submission).id


def test_a_script_job_bakes_a_file_that_reaches_the_server_and_failures_say_why(
    farm: TestFarm, demo_scene: Path, tmp_path: Path
) -> None:
    farm.start_server()
    farm.start_manager()
    farm.start_worker("worker-a")
    scripts = tmp_path / "scripts"
    scripts.mkdir()

    baked = farm.wait_job(
        _submit(farm, demo_scene, BAKES, scripts, args=["--resolution", "64"], frame=7)
    )
    assert baked.status == "completed", farm.logs()
    (task,) = farm.tasks(baked.id)
    assert task.type == "blender-script"
    expected = b"--resolution 64 frame 7 of scene.blend"
    (artifact,) = (
        farm.api().call("GET", f"/api/v1/jobs/{baked.id}/artifacts", wire.ArtifactList).root
    )
    assert (artifact.name, artifact.task_id) == ("cache/fluid_0007.txt", task.id)
    assert artifact.sha256 == hashlib.sha256(expected).hexdigest()
    served = farm.api().request("GET", f"/api/v1/jobs/{baked.id}/artifacts/cache/fluid_0007.txt")
    assert served.content == expected
    assert (Path(baked.output_dir) / "cache" / "fluid_0007.txt").read_bytes() == expected
    fetched = farm.cli("jobs", "download", baked.id, str(tmp_path / "download"))
    assert fetched.returncode == 0, fetched.stderr
    assert (tmp_path / "download" / "cache" / "fluid_0007.txt").read_bytes() == expected
    # The Dashboard's link to it (job.js: the name encoded as one path segment).
    dashboard, _ = farm.start_dashboard()
    assert farm.secrets is not None
    with httpx.Client(base_url=dashboard, timeout=10) as browser:
        login = f"username=admin&password={farm.secrets.admin_password}"
        assert browser.post("/login", content=login, headers=FORM).status_code == 303
        linked = browser.get(f"/ui/jobs/{baked.id}/artifacts/cache%2Ffluid_0007.txt")
        assert (linked.status_code, linked.content) == (200, expected)

    raised = farm.wait_job(_submit(farm, demo_scene, RAISES, scripts))
    (task,) = farm.tasks(raised.id)
    # The job's own code: every Worker would fail it the same way, so the job fails at once.
    assert (raised.status, task.status, task.failure_count) == ("failed", "failed", 1)
    assert raised.last_error == "RuntimeError: no domain object to bake"
    log = farm.api().request("GET", f"/api/v1/jobs/{raised.id}/tasks/{task.id}/log").text
    assert "Traceback" in log and "no domain object to bake" in log, log

    missing = farm.wait_job(_submit(farm, demo_scene, LISTS_A_MISSING_FILE, scripts))
    (task,) = farm.tasks(missing.id)
    assert (missing.status, task.status, task.failure_count) == ("failed", "failed", 1)
    assert missing.last_error == (
        "The script scripts/bake.py listed cache/never_written.vdb in FLAMENCO_OUTPUTS, "
        "but there is no such file."
    )
    artifacts = farm.api().call("GET", f"/api/v1/jobs/{missing.id}/artifacts", wire.ArtifactList)
    assert artifacts.root == []
