"""The Blender add-on: built as a zip, installed into real Blender (the bpy wheel) as an
extension, and used against a real running farm. No mocks.

bpy is only ever imported in a child process (blender_session.py), never in pytest's own.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import io
import json
import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from e2e.test_dependencies import TEXTURE_RGB, build_scene_with_dependencies
from farmkit import TestFarm, free_port, wait_until
from flamenco import __version__
from flamenco.addon import builder
from flamenco.addon.render_flamenco import api
from flamenco.worker.blender import BlenderInstall, child_env

pytestmark = pytest.mark.blender

SESSION = Path(__file__).with_name("blender_session.py")
MARKER = "@@ADDON-RESULT@@"
LINKED_CUBE_RGB = (0, 0, 255)


def blender_ext_script() -> Path:
    """Blender's own extension tool (validate, build), shipped inside the bpy wheel."""
    spec = importlib.util.find_spec("bpy")  # finds the package without importing it
    assert spec is not None and spec.submodule_search_locations, "the bpy wheel is not installed"
    root = Path(next(iter(spec.submodule_search_locations)))
    found = sorted(root.glob("*/scripts/addons_core/bl_pkg/cli/blender_ext.py"))
    assert found, f"blender_ext.py not found under {root}"
    return found[-1]


def close(pixel: Any, expected: tuple[int, int, int], tolerance: int = 6) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(pixel[:3], expected, strict=True))


# ---- fixtures ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def addon_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The zip as a user makes it: `flamenco addon build DEST`."""
    dest = tmp_path_factory.mktemp("addon-dist")
    done = subprocess.run(
        [sys.executable, "-m", "flamenco", "addon", "build", str(dest)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    path = Path(done.stdout.strip())
    assert path == dest / f"render_flamenco-{__version__}.zip" and path.is_file()
    assert "Install from Disk" in done.stderr
    return path


@pytest.fixture(scope="module")
def addon_farm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestFarm]:
    """One farm for the module: Server, Manager 'local', one Worker."""
    with TestFarm(tmp_path_factory.mktemp("addon-farm")) as farm:
        farm.start_server()
        farm.start_manager()
        # The add-on saves the job's copy with this Blender (bpy 5.0); a `blender` found on
        # PATH may be older and unable to read it, so the Worker uses the bpy module too.
        farm.start_worker("w1", env={"PATH": path_without_blender()})
        wait_until(lambda: worker_listed(farm), 60, "the Worker listed on the Server")
        yield farm


def path_without_blender() -> str:
    folders = os.environ.get("PATH", "").split(os.pathsep)
    return os.pathsep.join(f for f in folders if not shutil.which("blender", path=f))


def worker_listed(farm: TestFarm) -> bool:
    managers = farm.api().request("GET", "/api/v1/managers").json()
    return any(m["status"] == "online" and m["workers"] for m in managers)


@pytest.fixture(scope="module")
def scene(blender_install: BlenderInstall, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """project/scenes/shot.blend with a texture in project/textures and elsewhere/lib.blend."""
    return build_scene_with_dependencies(blender_install, tmp_path_factory.mktemp("addon-scene"))


def run_session(plan: dict[str, Any], folder: Path) -> dict[str, Any]:
    """Run blender_session.py in its own Blender user folder and temp folder."""
    (folder / "tmp").mkdir(parents=True)
    plan_file = folder / "plan.json"
    plan_file.write_text(json.dumps(plan))
    extra = {"TMPDIR": str(folder / "tmp"), "XDG_CACHE_HOME": str(folder / "cache")}
    env = child_env(folder / "user", extra)
    done = subprocess.run(
        [sys.executable, "-P", str(SESSION), str(plan_file)],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith(MARKER)]
    assert lines, f"no result (rc {done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    result = json.loads(lines[-1][len(MARKER) :])
    assert "crash" not in result, result["crash"]
    assert result["enabled"], result
    return result


def job_ids(farm: TestFarm) -> set[str]:
    return {job["id"] for job in farm.api().request("GET", "/api/v1/jobs").json()}


# ---- the zip -------------------------------------------------------------------------------------


def test_build_writes_an_extension_zip_that_blender_accepts(addon_zip: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(blender_ext_script()), "validate", str(addon_zip)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr

    with zipfile.ZipFile(addon_zip) as zf:
        names = set(zf.namelist())
        manifest = tomllib.loads(zf.read("blender_manifest.toml").decode())
    assert manifest["id"] == "render_flamenco"
    assert manifest["type"] == "add-on"
    assert manifest["version"] == __version__
    assert manifest["blender_version_min"] == "4.2.0"
    assert manifest["license"] == ["SPDX:GPL-3.0-or-later"]
    assert set(manifest["permissions"]) == {"network", "files"}
    # The add-on's modules at the root, blender-asset-tracer bundled with its licence.
    assert {"__init__.py", "api.py", "operators.py", "submission.py"} <= names
    assert "_vendor/blender_asset_tracer/pack/__init__.py" in names
    assert "_vendor/blender_asset_tracer-LICENSE.txt" in names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    # The same sources give the same bytes, so the Server's zip is the CLI's zip.
    assert builder.build_bytes() == addon_zip.read_bytes()


def test_the_addon_imports_only_the_standard_library_and_what_it_bundles(addon_zip: Path) -> None:
    allowed = set(sys.stdlib_module_names) | {"bpy", "__future__"}
    with zipfile.ZipFile(addon_zip) as zf:
        sources = {
            n: zf.read(n).decode()
            for n in zf.namelist()
            if n.endswith(".py") and not n.startswith("_vendor/")
        }
    outside: list[str] = []
    for name, text in sources.items():
        for node in ast.walk(ast.parse(text, name)):
            if isinstance(node, ast.Import):
                roots = [alias.name.split(".")[0] for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                roots = [node.module.split(".")[0]]
            else:
                continue
            outside += [f"{name}: {root}" for root in roots if root not in allowed]
    assert outside == []


def test_dashboard_url_uses_the_servers_host_on_port_8888() -> None:
    assert api.dashboard_url("http://farm.example:9999", "j 1") == (
        "http://farm.example:8888/jobs/j%201"
    )
    assert api.dashboard_url("farm.example/", "abc") == "http://farm.example:8888/jobs/abc"
    assert api.dashboard_url("https://[::1]:9999", "x") == "https://[::1]:8888/jobs/x"
    with pytest.raises(api.FlamencoError, match="not an http"):
        api.normalise_url("ftp://farm.example")


def test_the_device_warning_knows_the_farms_gpus_only_when_workers_report_them() -> None:
    def managers(*gpus: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
        workers = [
            {"name": f"w{i}"} | ({} if g is None else {"gpus": g}) for i, g in enumerate(gpus)
        ]
        return [{"name": "local", "status": "online", "workers": workers}]

    cuda = [{"index": 0, "vendor": "NVIDIA", "model": "X", "backends": ["CUDA", "OPTIX"]}]
    assert api.farm_gpu_backends(managers(None)) is None  # Workers say nothing about GPUs
    assert api.farm_gpu_backends(managers([], cuda)) == ["CUDA", "OPTIX"]
    assert api.device_warning("HIP", managers(None)) == ""
    assert api.device_warning("OPTIX", managers([], cuda)) == ""
    assert api.device_warning("GPU", managers([], cuda)) == ""
    assert "HIP" in api.device_warning("HIP", managers([], cuda))
    assert "GPU" in api.device_warning("GPU", managers([]))
    assert api.device_warning("CPU", managers([])) == ""


def test_the_server_offers_the_same_zip_without_login(
    addon_farm: TestFarm, addon_zip: Path
) -> None:
    response = httpx.get(f"{addon_farm.server_url}/api/v1/addon/render_flamenco.zip", timeout=30)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/zip"
    assert f"render_flamenco-{__version__}.zip" in response.headers["content-disposition"]
    assert response.content == addon_zip.read_bytes()
    assert zipfile.ZipFile(io.BytesIO(response.content)).testzip() is None


# ---- inside Blender ------------------------------------------------------------------------------


def test_submit_from_blender_uploads_the_dependencies_and_renders_them(
    addon_farm: TestFarm, addon_zip: Path, scene: Path, tmp_path: Path
) -> None:
    farm = addon_farm
    root = scene.parents[2]
    deps = [root / "project" / "textures" / "green.png", root / "elsewhere" / "libs" / "lib.blend"]
    for dep in deps:  # last changed an hour ago: the hash cache remembers only settled files
        mtime = dep.stat().st_mtime_ns - 3600 * 10**9
        os.utime(dep, ns=(mtime, mtime))
    plan = {
        "mode": "submit",
        "zip": str(addon_zip),
        "server_url": farm.server_url,
        "token": farm.token,
        "scene": str(scene),
        "wait_s": 90,
    }
    r = run_session(plan, tmp_path / "session")

    # Installed as an extension; BAT comes from the zip, not from this virtualenv.
    extension = tmp_path / "session" / "user" / "extensions" / "user_default" / "render_flamenco"
    assert Path(r["addon_file"]).parent == extension
    assert Path(r["bat_location"]) == extension / "_vendor" / "blender_asset_tracer"
    assert r["token_subtype"] == "PASSWORD"
    # Check Connection: the Server's version and its Managers.
    assert r["check"] == {"result": ["FINISHED"], "error": ""}
    assert f"Flamenco Server {__version__}" in r["connection"]
    assert "local (online, 1 Worker)" in r["connection"]
    assert r["site_suggestions"] == ["local"]

    # The job, in the CLI's wire format.
    assert r["submit"] == {"result": ["FINISHED"], "error": ""}, r
    job = r["job"]
    assert job["name"] == "shot" and job["priority"] == 60 and job["sites"] == ["local"]
    assert job["settings"] == {
        "blend": "shot.blend",
        "frames": "1-2",
        "chunk_size": 1,
        "output_format": "PNG",
        "render_device": "CPU",
        "min_blender_version": "5.0",  # the Blender that saved the job's copy
    }
    assert r["default_output_format"] == "SCENE"  # the file's own output settings
    assert r["method"] == "bat" and r["uploaded"][1] == 3  # scene, texture, library
    assert r["last_job_id"] == job["id"]
    assert r["dashboard"] == f"http://127.0.0.1:8888/jobs/{job['id']}"
    # The artist's file is untouched and no temporary folder is left.
    assert r["filepath_after"] == str(scene)
    assert r["file_unchanged"] and r["file_unchanged_at_end"]
    assert r["leftovers"] == []
    # The panel and the preferences draw with properties and operators that exist.
    drawn = r["panel_after"]
    assert {"job_name", "frames", "chunk_size", "priority", "target_site"} <= set(drawn["props"])
    drawn_props = {"render_device", "output_format", "run_scripts", "check_blank", "progress"}
    assert drawn_props <= set(drawn["props"])
    assert {"flamenco.submit", "flamenco.open_dashboard"} <= set(drawn["operators"])
    assert "flamenco.open_dashboard" not in r["panel_before"]["operators"]
    assert {"server_url", "api_token"} <= set(r["preferences_panel"]["props"])
    assert "flamenco.check_connection" in r["preferences_panel"]["operators"]

    # Submitted again, only the new copy of the scene was read: the texture and the library
    # were remembered by the hash cache in the user's cache folder.
    assert r["again"] == {"result": ["FINISHED"], "error": ""}, r
    assert r["again_hashed"] == [1, 3]
    # ... and that frame was sent as 2 tiles ("Tiles" 2), joined by the Server into one frame.
    tiled = r["again_job"]
    assert tiled["settings"]["tiles"] == 2 and "tiles" not in job["settings"]
    assert (tmp_path / "session" / "cache" / "flamenco" / "hashes.sqlite3").is_file()

    # The texture and the library are on the Server.
    hashes = [hashlib.sha256(p.read_bytes()).hexdigest() for p in deps]
    missing = farm.api().request("POST", "/api/v1/blobs/missing", json={"hashes": hashes})
    assert missing.json()["missing"] == []

    # Without BAT: Blender's own list of paths; only the new copy of the scene is sent.
    assert r["fallback"] == {"result": ["FINISHED"], "error": ""}, r
    assert r["fallback_method"] == "paths"
    assert r["fallback_uploaded"] == [1, 3]
    fallback = r["fallback_job"]
    assert fallback["name"] == "without BAT" and fallback["settings"]["frames"] == "2"
    assert fallback["settings"]["scripts"] is False  # "Run the File's Scripts" unticked
    assert fallback["settings"]["check_blank"] is True  # "Fail Blank Frames" ticked
    assert "check_blank" not in r["job"]["settings"]  # off unless ticked
    assert fallback["settings"]["blend"] == "project/scenes/shot.blend"  # the folders mirrored

    # The panel followed the last job until it completed.
    assert r["watching"]
    assert r["statuses"][-1] == "Completed: 1/1 frames", r["statuses"]
    assert r["refresh"] == {"result": ["FINISHED"], "error": ""}
    assert r["final_progress"] == pytest.approx(1.0)

    assert farm.wait_job(tiled["id"], timeout=120).status == "completed", farm.logs()
    assert sorted(t.name for t in farm.tasks(tiled["id"])) == [
        "render 1 tile 1/2",
        "render 1 tile 2/2",
    ]
    tiled_frames = farm.api().request("GET", f"/api/v1/jobs/{tiled['id']}/frames").json()
    assert [f["filename"] for f in tiled_frames] == ["frame_000001.png"]

    for job_id, frames in ((job["id"], 2), (fallback["id"], 1)):
        assert farm.wait_job(job_id, timeout=120).status == "completed", farm.logs()
        dest = tmp_path / "frames" / job_id
        fetched = farm.cli("jobs", "download", job_id, str(dest))
        assert fetched.returncode == 0, fetched.stderr
        images = sorted(dest.glob("*.png"))
        assert len(images) == frames
        for frame in images:
            image = Image.open(frame).convert("RGB")
            assert close(image.getpixel((10, 16)), TEXTURE_RGB), f"{frame}: no texture"
            assert close(image.getpixel((40, 16)), LINKED_CUBE_RGB), f"{frame}: no linked cube"


def test_errors_are_one_clear_sentence_and_create_no_job(
    addon_farm: TestFarm, addon_zip: Path, scene: Path, tmp_path: Path
) -> None:
    farm = addon_farm
    broken = tmp_path / "broken"
    shutil.copytree(scene.parents[2], broken)
    (broken / "project" / "textures" / "green.png").unlink()
    before = job_ids(farm)
    plan = {
        "mode": "errors",
        "zip": str(addon_zip),
        "server_url": farm.server_url,
        "token": farm.token,
        "scene": str(scene),
        "missing_scene": str(broken / "project" / "scenes" / "shot.blend"),
        "dead_url": f"http://127.0.0.1:{free_port()}",
    }
    r = run_session(plan, tmp_path / "session")

    def failed(key: str, *words: str) -> None:
        assert r[key]["result"] == ["CANCELLED"], (key, r[key])
        message = r[key]["error"]
        assert all(word in message for word in words), (key, message)
        assert message.endswith(".") and "Traceback" not in message, message

    failed("unsaved", "Save the file first")
    assert r["unsaved_status"] == r["unsaved"]["error"]
    failed("wrong_token_check", "refused the API token")
    failed("wrong_token", "refused the API token")
    assert r["wrong_token_status"] == r["wrong_token"]["error"]
    failed("down_check", "cannot be reached", "connection refused")
    failed("down", "cannot be reached", plan["dead_url"])
    assert r["down_status"] == r["down"]["error"]
    failed("rejected", "Frame range", "5-1")
    assert r["rejected_status"] == r["rejected"]["error"]
    failed("bad_notify", "notification URL 'ftp://example.com/hook' is not an http://")
    failed("bad_after", "There is no job with id 'nosuchjob' to wait for.")
    width, height = r["pixels"]
    failed("too_many_tiles", f"--tiles {width * height + 1} is more than the {width}x{height}")
    assert r["too_many_tiles_status"] == r["too_many_tiles"]["error"]
    failed("tiles_two_frames", "--tiles splits one frame over many machines", "2 frames")
    failed("missing", "missing", "green.png", "Allow missing files")
    assert r["missing_status"] == r["missing"]["error"]

    assert r["last_job_id"] == ""
    assert r["disabled_clean"] and r["enabled_again"]
    assert r["leftovers"] == []
    assert job_ids(farm) == before
