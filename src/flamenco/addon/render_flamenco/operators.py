"""Operators: check the connection, submit, follow the last job, open it in the Dashboard.

Submitting never touches the artist's open file: it saves a copy into a temporary folder
(``save_as_mainfile(copy=True)``: the open file keeps its path and state), then a
background thread (submission.Submission) does all file and network work. In the UI the
operator is modal and polls that thread on a timer, so Blender stays responsive; run from a
script or in background mode (``execute``), it polls the same thread until it is done.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import bpy
from bpy.app.handlers import persistent

from . import state
from .api import FlamencoError, Server, dashboard_url, describe_connection, normalise_url
from .flamenco_tiles import TileError, grid_shape  # core/tiles.py, copied in by the builder
from .job_types import RENDER, fetch_job_types, schema_of
from .job_types import read_settings as read_type_settings
from .packing import load_bat
from .preferences import preferences
from .properties import FINAL_STATUSES, scene_frames
from .submission import JobRequest, Submission

POLL_S = 0.1  # how often the UI looks at a running submission
WATCH_S = 3.0  # how often the last job's status is fetched while it runs
REFRESH_TIMEOUT_S = 10.0  # the watcher's requests, in a thread
BLOCKING_TIMEOUT_S = 5.0  # buttons that wait for one answer: Check Connection, Refresh


def _redraw(context: bpy.types.Context | None = None) -> None:
    wm = (context or bpy.context).window_manager
    for window in getattr(wm, "windows", []):
        for area in window.screen.areas:
            if area.type in {"PROPERTIES", "PREFERENCES"}:
                area.tag_redraw()


# ---- connection --------------------------------------------------------------------------------


class FLAMENCO_OT_check_connection(bpy.types.Operator):
    """Ask the Flamenco Server for its version and its Managers"""

    bl_idname = "flamenco.check_connection"
    bl_label = "Check Connection"

    def execute(self, context: bpy.types.Context) -> set[str]:
        prefs = preferences(context)
        try:
            server = Server(prefs.server_url, prefs.api_token, BLOCKING_TIMEOUT_S, prefs.ca_bundle)
            version = server.version()
            managers = server.managers()
        except FlamencoError as exc:
            state.connection = str(exc)
            _redraw(context)
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        state.managers = managers
        with contextlib.suppress(FlamencoError):  # a Server from before job types has none
            fetch_job_types(context)
        state.connection = describe_connection(version, managers)
        _redraw(context)
        self.report({"INFO"}, state.connection)
        return {"FINISHED"}


# ---- submitting ------------------------------------------------------------------------------


def check_tiles(scene: bpy.types.Scene, tiles: int) -> None:
    """Refuse a tile count the frame cannot be split into, with the CLI's sentence, before
    anything is saved or sent (the Server refuses a job of more than one frame itself)."""
    render = scene.render
    pct = render.resolution_percentage  # the size Blender renders, as the Worker counts it
    width, height = render.resolution_x * pct // 100, render.resolution_y * pct // 100
    try:
        grid_shape(tiles, width, height)
    except TileError as exc:
        raise FlamencoError(str(exc)) from None


def prepare_request(context: bpy.types.Context) -> JobRequest:
    """Read the settings and save a copy of the scene; raise FlamencoError if that fails."""
    prefs = preferences(context)
    server_url = normalise_url(prefs.server_url)
    if not prefs.api_token.strip():
        raise FlamencoError("Set your API token in the add-on's preferences first.")
    if not bpy.data.filepath:
        raise FlamencoError(
            "Save the file first: Flamenco renders a saved .blend file and the files it uses."
        )
    scene = context.scene
    settings = scene.flamenco
    original = Path(bpy.data.filepath)
    frames, tiles, of_type = "", 0, {}
    if settings.job_type == RENDER:
        frames = scene_frames(scene) if settings.use_scene_frames else settings.frames.strip()
        if not frames:
            raise FlamencoError(
                "Type the frames to render (e.g. 1-10,15) or use the scene's range."
            )
        tiles = settings.tiles if settings.tiles >= 2 else 0  # 0 and 1: whole frames
        if tiles:
            check_tiles(scene, tiles)
    else:  # another job type: its settings from the panel (job_types.py)
        if schema_of(settings.job_type) is None:  # not asked since Blender started
            fetch_job_types(context)
        values, files, scene_settings = read_type_settings(settings, original)
        of_type = {
            "job_type": settings.job_type,
            "type_settings": values,
            "scene_settings": scene_settings,
            "local_files": files,
        }
    use_bat = state.use_bat and load_bat() is not None
    workdir = Path(tempfile.mkdtemp(prefix="flamenco-submit-"))
    copy = workdir / "scene" / original.name
    copy.parent.mkdir()
    try:
        # copy=True: the open file keeps its path and is not marked as saved. For BAT the
        # relative paths are rebased onto the copy's folder (they point at the same files);
        # without BAT they stay as they are, relative to the original's folder, which the
        # job's folder mirrors (packing.collect_with_paths).
        bpy.ops.wm.save_as_mainfile(
            filepath=str(copy), copy=True, relative_remap=use_bat, check_existing=False
        )
    except RuntimeError as exc:
        shutil.rmtree(workdir, ignore_errors=True)
        reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else "unknown reason"
        raise FlamencoError(
            f"A copy of the file could not be saved for the job ({reason})."
        ) from exc
    if not copy.is_file():
        shutil.rmtree(workdir, ignore_errors=True)
        raise FlamencoError("A copy of the file could not be saved for the job.")
    dependencies = (
        []
        if use_bat
        else [Path(p) for p in bpy.utils.blend_paths(absolute=True, packed=False, local=False)]
    )
    site = settings.target_site.strip()
    return JobRequest(
        server_url=server_url,
        token=prefs.api_token.strip(),
        ca_bundle=prefs.ca_bundle,
        blend_copy=copy,
        original=original,
        workdir=workdir,
        name=settings.job_name.strip() or original.stem,
        frames=frames,
        chunk_size=settings.chunk_size,
        task_seconds=settings.task_seconds if settings.chunk_by_time else 0.0,
        tiles=tiles,
        priority=settings.priority,
        sites=[site] if site else [],
        notify=settings.notify_url.strip(),
        after=[job_id for job_id in re.split(r"[\s,]+", settings.after_jobs) if job_id],
        render_device=settings.render_device,
        output_format=settings.output_format,
        run_scripts=settings.run_scripts,
        check_blank=settings.check_blank,
        allow_missing=settings.allow_missing,
        # This Blender saved the copy: a Worker's older Blender could lose what it adds.
        min_blender="{}.{}".format(*bpy.app.version[:2]),
        use_bat=use_bat,
        dependencies=dependencies,
        **of_type,
    )


class FLAMENCO_OT_submit(bpy.types.Operator):
    """Save a copy of this file, upload it with the files it uses and create a render job"""

    bl_idname = "flamenco.submit"
    bl_label = "Submit to Flamenco"

    _timer: Any = None
    _scene_name: str = ""

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return state.active is None and context.scene is not None

    def _start(self, context: bpy.types.Context) -> Submission | None:
        settings = context.scene.flamenco
        self._scene_name = context.scene.name
        try:
            request = prepare_request(context)
        except FlamencoError as exc:
            settings.status = str(exc)
            self.report({"ERROR"}, str(exc))
            return None
        settings.status, settings.progress = "Submitting", 0.0
        state.active = Submission(request).start()
        return state.active

    def _scene_settings(self) -> Any:
        scene = bpy.data.scenes.get(self._scene_name)
        return scene.flamenco if scene is not None else None

    def _update(self, context: bpy.types.Context) -> bool:
        """Show the thread's progress; True once it is done."""
        assert state.active is not None
        done, fraction, message = state.active.poll()
        settings = self._scene_settings()
        if settings is not None and not done:
            settings.status, settings.progress = message, fraction
        context.window_manager.progress_update(int(fraction * 100))
        _redraw(context)
        return done

    def _finish(self, context: bpy.types.Context) -> set[str]:
        submission, state.active = state.active, None
        assert submission is not None
        submission.join()
        settings = self._scene_settings()
        if submission.outcome is None:
            if settings is not None:
                settings.status = submission.error
            self.report({"ERROR"}, submission.error)
            return {"CANCELLED"}
        outcome = state.last_outcome = submission.outcome
        job = outcome.job
        if settings is not None:
            settings.last_job_id = job["id"]
            settings.last_job_name = job.get("name", "")
            settings.last_job_server = submission.req.server_url
            apply_job(settings, job)
        message = (
            f"Submitted job '{job.get('name')}' ({job['id']}): uploaded {outcome.uploaded} of "
            f"{outcome.total} files; the Server had the others."
        )
        if outcome.missing:
            message += f" Missing: {', '.join(outcome.missing)}."
        self.report({"WARNING"} if outcome.missing else {"INFO"}, message)
        start_watching()
        _redraw(context)
        return {"FINISHED"}

    # In the UI: modal, polled by a timer, Blender stays responsive.
    def invoke(self, context: bpy.types.Context, event: bpy.types.Event) -> set[str]:
        if context.window is None:
            return self.execute(context)
        if self._start(context) is None:
            return {"CANCELLED"}
        wm = context.window_manager
        self._timer = wm.event_timer_add(POLL_S, window=context.window)
        wm.modal_handler_add(self)
        wm.progress_begin(0, 100)
        return {"RUNNING_MODAL"}

    def modal(self, context: bpy.types.Context, event: bpy.types.Event) -> set[str]:
        if event.type == "ESC" and event.value == "PRESS" and state.active is not None:
            state.active.cancel()
            return {"RUNNING_MODAL"}
        if event.type != "TIMER" or not self._update(context):
            return {"PASS_THROUGH"}
        wm = context.window_manager
        wm.event_timer_remove(self._timer)
        wm.progress_end()
        return self._finish(context)

    # From scripts and in background mode: the same thread, polled until it is done.
    def execute(self, context: bpy.types.Context) -> set[str]:
        if self._start(context) is None:
            return {"CANCELLED"}
        while not self._update(context):
            time.sleep(POLL_S / 2)
        return self._finish(context)


# ---- the last job's status ----------------------------------------------------------------------


def apply_job(settings: Any, job: dict[str, Any]) -> None:
    """Show a job's state (an answer of GET /api/v1/jobs/{id}) in the panel."""
    status = str(job.get("status", "unknown"))
    settings.last_job_status = status
    settings.progress = float(job.get("progress") or 0.0)
    settings.status = (
        f"{status.capitalize()}: {job.get('frames_done', 0)}/{job.get('frames_total', 0)} frames"
    )


def _scenes_watching() -> list[Any]:
    return [
        s.flamenco
        for s in bpy.data.scenes
        if s.flamenco.last_job_id and s.flamenco.last_job_status not in FINAL_STATUSES
    ]


_fetched: dict[str, dict[str, Any] | str] = {}  # job id -> job, or the reason it failed
_fetching: set[str] = set()
_lock = threading.Lock()


def _fetch(server_url: str, token: str, ca_bundle: str, job_id: str) -> None:
    try:
        server = Server(server_url, token, REFRESH_TIMEOUT_S, ca_bundle)
        result: dict[str, Any] | str = server.job(job_id)
    except FlamencoError as exc:
        result = str(exc)
    with _lock:
        _fetched[job_id] = result
        _fetching.discard(job_id)


def _apply_result(settings: Any, result: dict[str, Any] | str) -> None:
    if isinstance(result, dict):
        apply_job(settings, result)
    else:
        settings.status = f"The job's status could not be fetched: {result}"


def watch_jobs() -> float | None:
    """bpy.app.timers callback: fetch the last jobs' status in a thread, show it when it came."""
    try:
        watching = _scenes_watching()
        token = preferences().api_token.strip()
        ca_bundle = preferences().ca_bundle
    except (AttributeError, KeyError):  # add-on being disabled, or no data yet
        return None
    for settings in watching:
        job_id = settings.last_job_id
        with _lock:
            result = _fetched.pop(job_id, None)
            busy = job_id in _fetching
            if result is None and not busy:
                _fetching.add(job_id)
                server = settings.last_job_server or preferences().server_url
                args = (server, token, ca_bundle, job_id)
                threading.Thread(target=_fetch, args=args, daemon=True).start()
        if result is not None:
            _apply_result(settings, result)
    if watching:
        _redraw()
    return WATCH_S if _scenes_watching() else None


def start_watching() -> None:
    if not bpy.app.timers.is_registered(watch_jobs):
        bpy.app.timers.register(watch_jobs, first_interval=WATCH_S, persistent=True)


@persistent
def _on_load(_filepath: str = "") -> None:
    if _scenes_watching():
        start_watching()


class FLAMENCO_OT_refresh_status(bpy.types.Operator):
    """Fetch the status of the last job submitted from this file now"""

    bl_idname = "flamenco.refresh_status"
    bl_label = "Refresh"

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return context.scene is not None and bool(context.scene.flamenco.last_job_id)

    def execute(self, context: bpy.types.Context) -> set[str]:
        settings = context.scene.flamenco
        prefs = preferences(context)
        server = settings.last_job_server or prefs.server_url
        try:
            job = Server(server, prefs.api_token, BLOCKING_TIMEOUT_S, prefs.ca_bundle).job(
                settings.last_job_id
            )
        except FlamencoError as exc:
            _apply_result(settings, str(exc))
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        apply_job(settings, job)
        _redraw(context)
        return {"FINISHED"}


class FLAMENCO_OT_open_dashboard(bpy.types.Operator):
    """Open the last job submitted from this file in the Flamenco Dashboard"""

    bl_idname = "flamenco.open_dashboard"
    bl_label = "Open in Dashboard"

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return context.scene is not None and bool(context.scene.flamenco.last_job_id)

    def execute(self, context: bpy.types.Context) -> set[str]:
        settings = context.scene.flamenco
        server = settings.last_job_server or preferences(context).server_url
        try:
            url = dashboard_url(server, settings.last_job_id)
        except FlamencoError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        bpy.ops.wm.url_open(url=url)
        return {"FINISHED"}


CLASSES: tuple[type, ...] = (
    FLAMENCO_OT_check_connection,
    FLAMENCO_OT_submit,
    FLAMENCO_OT_refresh_status,
    FLAMENCO_OT_open_dashboard,
)


def register() -> None:
    if _on_load not in bpy.app.handlers.load_post:
        bpy.app.handlers.load_post.append(_on_load)


def unregister() -> None:
    if _on_load in bpy.app.handlers.load_post:
        bpy.app.handlers.load_post.remove(_on_load)
    if bpy.app.timers.is_registered(watch_jobs):
        bpy.app.timers.unregister(watch_jobs)
    if state.active is not None:
        state.active.cancel()
        state.active = None
