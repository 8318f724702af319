"""`flamenco job-types` and `flamenco submit --type NAME --set key=value` against a real
Server: the listing, a blender-script job with its script uploaded and its settings read per
their kinds, and each refusal one sentence (the CLI's exit non-zero, the Server's 422)."""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from farmkit import TestFarm
from testdata import CORPUS

INSTALLED = "blender-render, blender-script, ffmpeg"


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestFarm]:
    with TestFarm(tmp_path_factory.mktemp("job-types-cli") / "farm") as farm:
        farm.start_server()
        yield farm


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A scene with a script in a folder beside it."""
    folder = tmp_path_factory.mktemp("project")
    shutil.copy(CORPUS / "basic_file.blend", folder / "scene.blend")
    (folder / "scripts").mkdir()
    (folder / "scripts" / "bake.py").write_text("FLAMENCO_OUTPUTS.append('cache/a.txt')\n")
    return folder


def one_line(text: str) -> str:
    return " ".join(text.split())


def test_job_types_lists_each_type_with_its_settings(srv: TestFarm) -> None:
    listed = srv.cli("job-types")
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert "blender-render: Render frames" in lines
    assert "blender-script: Run a script" in lines
    assert "  frames: text; required. Frames, e.g. 1-10,15,20-24 or 1-100x5." in lines
    assert any(line.startswith("  fps: whole number from 1 to 240; default 24.") for line in lines)
    assert any(line.startswith("  script: text, a local file; required.") for line in lines)
    as_json = srv.cli("job-types", "--json")
    names = [t["name"] for t in json.loads(as_json.stdout)]
    assert names == ["blender-render", "blender-script", "ffmpeg"]


def test_a_blender_script_job_carries_its_script_and_typed_settings(
    srv: TestFarm, project: Path
) -> None:
    script = project / "scripts" / "bake.py"
    submitted = srv.cli(
        "submit", str(project / "scene.blend"), "--type", "blender-script",
        "--set", f"script={script}", "--set", "args=--count 3 'two words'", "--set", "frame=7",
        "--json",
    )  # fmt: skip
    assert submitted.returncode == 0, submitted.stderr
    job = json.loads(submitted.stdout)
    assert job["type"] == "blender-script"
    settings = job["settings"]
    assert (settings["blend"], settings["script"]) == ("scene.blend", "scripts/bake.py")
    assert (settings["args"], settings["frame"]) == (["--count", "3", "two words"], 7)
    assert "frames" not in settings and "chunk_size" not in settings
    (task,) = srv.tasks(job["id"])
    assert (task.type, task.name, task.frames) == ("blender-script", "script bake.py", [])
    assert stored_command(srv, task.id) == {
        "blend": "scene.blend",
        "script": "scripts/bake.py",
        "args": ["--count", "3", "two words"],
        "frame": 7,
    }
    shown = srv.cli("jobs", "show", job["id"]).stdout.splitlines()
    assert "Type: blender-script" in shown
    assert not [line for line in shown if line.startswith("Format:")]  # it renders no frames
    uploaded = srv.api().request("GET", f"/api/v1/blobs/{_sha(script)}")
    assert uploaded.content == script.read_bytes()


def test_a_script_outside_the_scenes_folder_goes_under_submitted(
    srv: TestFarm, project: Path, tmp_path: Path
) -> None:
    script = tmp_path / "elsewhere.py"
    script.write_text("pass\n")
    submitted = srv.cli(
        "submit", str(project / "scene.blend"), "--type", "blender-script",
        "--set", f"script={script}", "--json",
    )  # fmt: skip
    assert submitted.returncode == 0, submitted.stderr
    assert json.loads(submitted.stdout)["settings"]["script"] == "_submitted/script/elsewhere.py"


def test_a_video_job_of_the_frames_of_another_takes_no_scene(srv: TestFarm, project: Path) -> None:
    render = srv.cli("submit", str(project / "scene.blend"), "--frames", "1-3", "--json")
    assert render.returncode == 0, render.stderr
    render_id = json.loads(render.stdout)["id"]
    submitted = srv.cli(
        "submit", "--type", "ffmpeg", "--after", render_id, "--set", "fps=30", "--json"
    )  # fmt: skip
    assert submitted.returncode == 0, submitted.stderr
    job = json.loads(submitted.stdout)
    assert (job["type"], job["name"], job["after"]) == ("ffmpeg", "ffmpeg", [render_id])
    assert job["settings"] == {"fps": 30}
    (task,) = srv.tasks(job["id"])
    assert (task.type, task.frames) == ("ffmpeg", [])
    assert stored_command(srv, task.id) == {"frames": [], "fps": 30}


@pytest.mark.parametrize(
    ("args", "sentence"),
    [
        (["--type", "nope"], f"Unknown job type 'nope'; installed job types: {INSTALLED}."),
        (["--frames", "1", "--set", "fps=abc"], "Setting 'fps' takes a whole number, got 'abc'."),
        (["--frames", "1", "--set", "fps=999"], "Setting 'fps' must be from 1 to 240, got 999."),
        (["--set", "fps=30"], "Setting 'frames' is required."),
        (["--frames", "1", "--set", "fsp=30"], "Job type 'blender-render' has no setting 'fsp'"),
        (["--type", "blender-script"], "Setting 'script' is required."),
        (
            ["--type", "blender-script", "--set", "script=/no/such/bake.py"],
            "The file '/no/such/bake.py' of setting 'script' does not exist.",
        ),
        (
            ["--type", "blender-script", "--frames", "1-3", "--set", "script=x.py"],
            "Unknown setting 'frames' for job type 'blender-script'.",
        ),
        (["--type", "ffmpeg"], "Job type 'ffmpeg' takes no .blend file; leave it out."),
    ],
)
def test_bad_types_and_settings_are_one_sentence_before_uploading(
    srv: TestFarm, project: Path, args: list[str], sentence: str
) -> None:
    if "script=x.py" in args:
        args = [a.replace("script=x.py", f"script={project / 'scripts' / 'bake.py'}") for a in args]
    result = srv.cli("submit", str(project / "scene.blend"), *args)
    assert_refused(result, sentence)


def test_a_render_without_a_scene_is_refused(srv: TestFarm) -> None:
    result = srv.cli("submit", "--frames", "1")
    assert_refused(result, "Job type 'blender-render' needs a .blend file: give it first.")


def assert_refused(result: subprocess.CompletedProcess, sentence: str) -> None:
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert sentence in one_line(result.stderr)
    assert result.stdout == ""


@pytest.mark.parametrize(
    ("job_type", "settings", "sentence"),
    [
        ("nope", {}, f"Unknown job type 'nope'; installed job types: {INSTALLED}."),
        ("blender-render", {"blend": "s.blend", "frames": "1", "fps": "24"},
         "Setting 'fps' must be a whole number, got '24'."),
        ("blender-script", {"blend": "s.blend", "script": "/abs.py"},
         "Setting 'script' must be a relative path inside the job's files, got '/abs.py'."),
        ("blender-script", {"blend": "s.blend", "script": "a.py", "args": "x"},
         "Setting 'args': Input should be a valid list, got 'x'."),
    ],
)  # fmt: skip
def test_the_server_refuses_them_with_a_422_sentence(
    srv: TestFarm, job_type: str, settings: dict, sentence: str
) -> None:
    body = {"name": "bad", "type": job_type, "files": {}, "settings": settings}
    answer = httpx.post(
        f"{srv.server_url}/api/v1/jobs",
        json=body,
        headers={"Authorization": f"Bearer {srv.token}"},
        timeout=30,
    )
    assert answer.status_code == 422, answer.text
    assert answer.json() == {"detail": sentence}


def stored_command(farm: TestFarm, task_id: str) -> dict:
    """The command the Server stored for the task: what its lease carries to the Worker."""
    with sqlite3.connect(farm.root / "server" / "server.sqlite") as db:
        (command,) = db.execute("SELECT command FROM tasks WHERE id = ?", (task_id,)).fetchone()
    return json.loads(command)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
