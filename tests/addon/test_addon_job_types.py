"""The add-on builds its panel from the Server's job types: in real Blender (the bpy wheel),
against a real Server, blender-script is chosen, its settings come from its schema, a bad
value is one sentence, and the job is created with its script sent and its settings typed;
back on blender-render the panel is today's."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from addon.test_addon import run_session
from farmkit import TestFarm
from testdata import CORPUS

pytestmark = pytest.mark.blender


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestFarm]:
    with TestFarm(tmp_path_factory.mktemp("addon-job-types")) as farm:
        farm.start_server()
        yield farm


def test_the_panel_offers_the_servers_job_types_and_submits_a_script_job(
    server: TestFarm, tmp_path: Path
) -> None:
    built = subprocess.run(
        [sys.executable, "-m", "flamenco", "addon", "build", str(tmp_path / "dist")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert built.returncode == 0, built.stderr
    project = tmp_path / "project"
    (project / "scripts").mkdir(parents=True)
    shutil.copy(CORPUS / "basic_file.blend", project / "shot.blend")
    script = project / "scripts" / "bake.py"
    script.write_text("FLAMENCO_OUTPUTS.append('cache/a.txt')\n")
    plan = {
        "mode": "job_types",
        "zip": built.stdout.strip(),
        "server_url": server.server_url,
        "token": server.token,
        "scene": str(project / "shot.blend"),
        "script": str(script),
    }
    r = run_session(plan, tmp_path / "session")

    assert r["default_type"] == "blender-render"
    assert r["unlisted"] == ["blender-render"]  # before the Server was asked
    assert r["check"]["result"] == ["FINISHED"], r["check"]
    assert r["listed"] == ["blender-script"]
    assert {"job_type", "frames", "chunk_size", "render_device"} <= set(r["render_panel"]["props"])
    assert "flamenco.refresh_job_types" in r["render_panel"]["operators"]
    assert r["type_settings"] == [
        ["script", "text", True],
        ["args", "list", False],
        ["frame", "whole number", False],
        ["worker_tag", "text", False],
        ["min_blender_version", "text", False],
    ]
    script_props = r["script_panel"]["props"]
    assert {"path", "text", "priority", "after_jobs"} <= set(script_props)
    assert not {"frames", "chunk_size", "render_device"} & set(script_props)

    sentence = "Setting 'frame' takes a whole number, got 'x'."
    assert r["bad_frame"] == {"result": ["CANCELLED"], "error": sentence}, r["bad_frame"]
    assert sentence in r["bad_frame_status"]

    assert r["submit"] == {"result": ["FINISHED"], "error": ""}, r
    job = r["job"]
    assert (job["type"], job["name"]) == ("blender-script", "bake")
    settings = job["settings"]
    assert (settings["blend"], settings["script"]) == ("shot.blend", "scripts/bake.py")
    assert (settings["args"], settings["frame"]) == (["--count", "3", "two words"], 2)
    assert settings["min_blender_version"] == "5.0"
    sha = hashlib.sha256(script.read_bytes()).hexdigest()
    assert server.api().request("GET", f"/api/v1/blobs/{sha}").content == script.read_bytes()
    (task,) = server.tasks(job["id"])
    assert (task.type, task.name) == ("blender-script", "script bake.py")

    assert {"frames", "chunk_size", "render_device"} <= set(r["render_panel_again"]["props"])
    assert r["leftovers"] == []
