"""Run inside Blender (the bpy wheel): install the add-on's zip and use it as an artist would.

Usage: python -P blender_session.py PLAN.json. The plan says which zip, which Server and
what to do ("submit" or "errors"); the results are printed as one JSON line after MARKER.
BLENDER_USER_RESOURCES must point at an empty folder, set before this script starts, so the
extension is installed there and nothing of the user's own Blender is touched.
"""

from __future__ import annotations

import hashlib
import json
import os
import ssl
import sys
import tempfile
import threading
import time
import traceback
import urllib.request
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import bpy

MARKER = "@@ADDON-RESULT@@"
ADDON = "bl_ext.user_default.render_flamenco"


def install(zip_path: str) -> Any:
    result = bpy.ops.extensions.package_install_files(
        filepath=zip_path, repo="user_default", enable_on_install=True
    )
    assert result == {"FINISHED"}, result
    return sys.modules[ADDON]


def prefs() -> Any:
    return bpy.context.preferences.addons[ADDON].preferences


def call(op: Any) -> dict[str, Any]:
    """Run an operator; its result, or the error sentence it reported."""
    try:
        return {"result": sorted(op()), "error": ""}
    except RuntimeError as exc:
        return {"result": ["CANCELLED"], "error": str(exc).removeprefix("Error: ").strip()}


def fingerprint(path: str) -> list[Any]:
    data = Path(path).read_bytes()
    return [hashlib.sha256(data).hexdigest(), os.stat(path).st_mtime_ns]


def leftovers() -> list[str]:
    return sorted(p.name for p in Path(tempfile.gettempdir()).glob("flamenco-submit-*"))


class FakeLayout:
    """Stands in for UILayout: draw() is never called in background mode, so call it here
    and check that every property and operator it names exists."""

    def __init__(self, log: dict[str, list[str]]) -> None:
        self.log = log

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: self._call(name, args, kwargs)

    def _call(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if name == "prop":
            data, prop = args[0], args[1]
            assert prop in data.bl_rna.properties, prop
            self.log["props"].append(prop)
        elif name == "operator":
            idname = args[0]
            module, op = idname.split(".")
            assert hasattr(getattr(bpy.ops, module), op), idname
            self.log["operators"].append(idname)
        elif name == "label":
            self.log["labels"].append(kwargs.get("text", ""))
        return FakeLayout(self.log)


def draw(cls: Any, real: Any = None) -> dict[str, list[str]]:
    """Call cls.draw with a FakeLayout; `real` lends its RNA data to the fake `self`."""
    log: dict[str, list[str]] = {"props": [], "operators": [], "labels": []}
    attrs = {}
    if real is not None:
        attrs = {name: getattr(real, name) for name in real.bl_rna.properties.keys()}  # noqa: SIM118 (RNA)
        attrs["bl_rna"] = real.bl_rna
    cls.draw(SimpleNamespace(layout=FakeLayout(log), **attrs), bpy.context)
    return log


def configure(plan: dict[str, Any], url: str | None = None, token: str | None = None) -> None:
    p = prefs()
    p.server_url = url if url is not None else plan["server_url"]
    p.api_token = token if token is not None else plan["token"]


def show_fetched_status(addon: Any, deadline: float) -> float | None:
    """One turn of the panel's timer function as Blender calls it: the first call starts the
    job's fetch in a thread, which is awaited; the second shows what it fetched and returns
    what the timer would (None once the job has ended)."""
    running = set(threading.enumerate())
    addon.operators.watch_jobs()
    for fetch in set(threading.enumerate()) - running:
        fetch.join(max(0.0, deadline - time.monotonic()))
    return addon.operators.watch_jobs()


def next_line(stream: Any, prefix: str) -> None:
    """Read the event stream up to its next line that starts with `prefix`."""
    while not (line := stream.readline().decode()).startswith(prefix):
        if not line:
            raise AssertionError(f"the Server's event stream ended before {prefix!r}")


def follow_last_job(addon: Any, wait_s: float) -> list[str]:
    """Follow the last job until it ends, as the panel does, woken by the Server's events of
    the job instead of Blender's timer: a turn of the timer function at first and after each
    event (the stream is subscribed before the first, so no change is missed). The statuses
    the panel showed, in order."""
    settings = bpy.context.scene.flamenco
    server = (settings.last_job_server or prefs().server_url).rstrip("/")
    request = urllib.request.Request(
        f"{server}/api/v1/events?job={settings.last_job_id}",
        headers={"Authorization": f"Bearer {prefs().api_token.strip()}"},
    )
    trust = ssl.create_default_context(cafile=prefs().ca_bundle or None)
    deadline = time.monotonic() + wait_s
    statuses: list[str] = []
    with urllib.request.urlopen(request, timeout=wait_s, context=trust) as stream:
        next_line(stream, ": connected")
        while time.monotonic() < deadline:
            again = show_fetched_status(addon, deadline)
            if not statuses or statuses[-1] != settings.status:
                statuses.append(settings.status)
            if again is None:
                break
            next_line(stream, "event:")
    return statuses


def submit_session(plan: dict[str, Any], addon: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    configure(plan)
    out["check"] = call(bpy.ops.flamenco.check_connection)
    out["connection"] = addon.state.connection
    out["token_subtype"] = prefs().bl_rna.properties["api_token"].subtype

    bpy.ops.wm.open_mainfile(filepath=plan["scene"])
    before = fingerprint(plan["scene"])
    scene = bpy.context.scene
    settings = scene.flamenco
    settings.chunk_size = 1
    settings.priority = 60
    settings.target_site = "local"
    settings.render_device = "CPU"
    out["default_output_format"] = settings.output_format
    settings.output_format = "PNG"
    out["site_suggestions"] = addon.properties._site_suggestions(settings, bpy.context, "lo")
    out["panel_before"] = draw(addon.ui.RENDER_PT_flamenco)

    started = time.monotonic()
    out["submit"] = call(bpy.ops.flamenco.submit)
    out["submit_s"] = time.monotonic() - started
    outcome = addon.state.last_outcome
    out["job"] = outcome.job if outcome else None
    out["uploaded"] = [outcome.uploaded, outcome.total] if outcome else None
    out["method"] = outcome.method if outcome else None
    out["bat_location"] = addon.packing.bat_location()
    out["addon_file"] = addon.__file__
    out["status_after_submit"] = settings.status
    out["last_job_id"] = settings.last_job_id
    out["filepath_after"] = bpy.data.filepath
    out["file_unchanged"] = fingerprint(plan["scene"]) == before
    out["leftovers"] = leftovers()
    out["panel_after"] = draw(addon.ui.RENDER_PT_flamenco)
    out["preferences_panel"] = draw(type(prefs()), prefs())
    out["dashboard"] = addon.api.dashboard_url(prefs().server_url, settings.last_job_id)

    # The same scene again: its texture and library have not changed since they were hashed,
    # so only the new copy of the scene is read (the hash cache, shared with the CLI).
    # This one frame is rendered as 2 tiles ("Tiles" set).
    settings.use_scene_frames = False
    settings.frames = "1"
    settings.tiles = 2
    out["again"] = call(bpy.ops.flamenco.submit)
    again = addon.state.last_outcome
    out["again_hashed"] = [again.hashed, again.total] if again else None
    out["again_job"] = again.job if again else None
    settings.tiles = 0

    # The same scene again, its dependencies found by Blender's own list instead of BAT.
    addon.state.use_bat = False
    settings.job_name = "without BAT"
    settings.use_scene_frames = False
    settings.frames = "2"
    settings.target_site = ""
    settings.run_scripts = False  # the box unticked: the job says so
    settings.check_blank = True  # "Fail Blank Frames" ticked: the job says so
    out["fallback"] = call(bpy.ops.flamenco.submit)
    fallback = addon.state.last_outcome
    out["fallback_job"] = fallback.job if fallback else None
    out["fallback_uploaded"] = [fallback.uploaded, fallback.total] if fallback else None
    out["fallback_method"] = fallback.method if fallback else None
    addon.state.use_bat = True

    # Follow the last job until it ends, as the panel does (see follow_last_job).
    out["watching"] = bpy.app.timers.is_registered(addon.operators.watch_jobs)
    out["statuses"] = follow_last_job(addon, plan.get("wait_s", 60))
    out["refresh"] = call(bpy.ops.flamenco.refresh_status)
    out["final_progress"] = settings.progress
    out["file_unchanged_at_end"] = fingerprint(plan["scene"]) == before
    return out


def error_session(plan: dict[str, Any], addon: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    configure(plan)
    # 1. The startup file was never saved.
    out["unsaved"] = call(bpy.ops.flamenco.submit)
    out["unsaved_status"] = bpy.context.scene.flamenco.status

    bpy.ops.wm.open_mainfile(filepath=plan["scene"])
    settings = bpy.context.scene.flamenco
    # 2. A wrong token: the connection check and the submission both say so.
    configure(plan, token="not-a-real-token")
    out["wrong_token_check"] = call(bpy.ops.flamenco.check_connection)
    out["wrong_token"] = call(bpy.ops.flamenco.submit)
    out["wrong_token_status"] = settings.status
    # 3. No Server at that address.
    configure(plan, url=plan["dead_url"])
    out["down_check"] = call(bpy.ops.flamenco.check_connection)
    out["down"] = call(bpy.ops.flamenco.submit)
    out["down_status"] = settings.status
    # 4. The Server refuses the job (an impossible frame range).
    configure(plan)
    settings.use_scene_frames = False
    settings.frames = "5-1"
    out["rejected"] = call(bpy.ops.flamenco.submit)
    out["rejected_status"] = settings.status
    # 5. A notification URL that is not http(s).
    settings.frames = "1"
    settings.notify_url = "ftp://example.com/hook"
    out["bad_notify"] = call(bpy.ops.flamenco.submit)
    settings.notify_url = ""
    # 5b. A job to wait for that does not exist.
    settings.after_jobs = "nosuchjob"
    out["bad_after"] = call(bpy.ops.flamenco.submit)
    settings.after_jobs = ""
    # 5c. Tiles: more than the frame's pixels (refused by the add-on before saving a copy),
    # then with two frames (sent: the Server refuses it).
    render = bpy.context.scene.render
    pct = render.resolution_percentage
    out["pixels"] = [render.resolution_x * pct // 100, render.resolution_y * pct // 100]
    settings.tiles = out["pixels"][0] * out["pixels"][1] + 1
    out["too_many_tiles"] = call(bpy.ops.flamenco.submit)
    out["too_many_tiles_status"] = settings.status
    settings.tiles, settings.frames = 4, "1-2"
    out["tiles_two_frames"] = call(bpy.ops.flamenco.submit)
    settings.tiles, settings.frames = 0, "1"
    # 6. A texture of the scene is gone.
    bpy.ops.wm.open_mainfile(filepath=plan["missing_scene"])
    out["missing"] = call(bpy.ops.flamenco.submit)
    out["missing_status"] = bpy.context.scene.flamenco.status
    out["last_job_id"] = bpy.context.scene.flamenco.last_job_id
    out["leftovers"] = leftovers()

    # Disabling removes everything; enabling again works.
    bpy.ops.preferences.addon_disable(module=ADDON)
    out["disabled_clean"] = not hasattr(bpy.types.Scene, "flamenco") and not hasattr(
        bpy.types, "RENDER_PT_flamenco"
    )
    bpy.ops.preferences.addon_enable(module=ADDON)
    out["enabled_again"] = hasattr(bpy.types.Scene, "flamenco") and hasattr(
        bpy.types, "RENDER_PT_flamenco"
    )
    return out


def tls_session(plan: dict[str, Any], addon: Any) -> dict[str, Any]:
    """An https:// Server whose CA the system does not know: refused with one sentence until
    the CA bundle preference names the CA, then a job is submitted and followed."""
    out: dict[str, Any] = {}
    configure(plan)
    out["ca_bundle_subtype"] = prefs().bl_rna.properties["ca_bundle"].subtype
    prefs().ca_bundle = ""
    out["untrusted_check"] = call(bpy.ops.flamenco.check_connection)
    bpy.ops.wm.open_mainfile(filepath=plan["scene"])
    settings = bpy.context.scene.flamenco
    settings.use_scene_frames = False
    settings.frames = "1"
    settings.render_device = "CPU"
    settings.output_format = "PNG"
    out["untrusted_submit"] = call(bpy.ops.flamenco.submit)
    out["untrusted_status"] = settings.status
    out["jobs_before"] = settings.last_job_id

    prefs().ca_bundle = plan["ca_bundle"]
    out["check"] = call(bpy.ops.flamenco.check_connection)
    out["connection"] = addon.state.connection
    out["submit"] = call(bpy.ops.flamenco.submit)
    outcome = addon.state.last_outcome
    out["job"] = outcome.job if outcome else None
    follow_last_job(addon, plan.get("wait_s", 60))  # the panel's fetches, over HTTPS
    out["final_status"] = settings.last_job_status
    out["preferences_panel"] = draw(type(prefs()), prefs())
    return out


def job_types_session(plan: dict[str, Any], addon: Any) -> dict[str, Any]:
    """The Server's job types in the panel: blender-script chosen, its settings drawn from its
    schema and typed in, a bad value refused with one sentence, then the job submitted."""
    out: dict[str, Any] = {}
    configure(plan)
    bpy.ops.wm.open_mainfile(filepath=plan["scene"])
    settings = bpy.context.scene.flamenco
    out["default_type"] = settings.job_type
    out["unlisted"] = addon.job_types.type_suggestions(settings, bpy.context, "")
    out["check"] = call(bpy.ops.flamenco.check_connection)
    out["listed"] = addon.job_types.type_suggestions(settings, bpy.context, "script")
    out["render_panel"] = draw(addon.ui.RENDER_PT_flamenco)
    settings.job_type = "blender-script"
    out["type_settings"] = [[i.name, i.kind, i.local_file] for i in settings.type_settings]
    out["script_panel"] = draw(addon.ui.RENDER_PT_flamenco)
    items = {item.name: item for item in settings.type_settings}
    items["script"].path = plan["script"]
    items["args"].text = "--count 3 'two words'"
    items["frame"].text = "x"
    out["bad_frame"] = call(bpy.ops.flamenco.submit)
    out["bad_frame_status"] = settings.status
    items["frame"].text = "2"
    settings.job_name = "bake"
    addon.state.job_types = []  # as after a restart of Blender: submitting asks the Server
    out["submit"] = call(bpy.ops.flamenco.submit)
    outcome = addon.state.last_outcome
    out["job"] = outcome.job if outcome else None
    out["uploaded"] = [outcome.uploaded, outcome.total] if outcome else None
    settings.job_type = "blender-render"  # back to the render panel, its settings as they were
    out["render_panel_again"] = draw(addon.ui.RENDER_PT_flamenco)
    out["leftovers"] = leftovers()
    return out


def main() -> None:
    plan = json.loads(Path(sys.argv[-1]).read_text())
    result: dict[str, Any] = {}
    try:
        started = time.monotonic()
        addon = install(plan["zip"])
        result["install_s"] = time.monotonic() - started
        result["enabled"] = ADDON in bpy.context.preferences.addons
        session = {
            "submit": submit_session,
            "errors": error_session,
            "tls": tls_session,
            "job_types": job_types_session,
        }[plan["mode"]]
        result.update(session(plan, addon))
    except BaseException:
        result["crash"] = traceback.format_exc()
    print(MARKER + " " + json.dumps(result), flush=True)


main()
