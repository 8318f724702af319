"""Runs INSIDE Blender's Python: keeps one .blend loaded and renders frames on request.

Started either as ``blender -b --factory-startup -y --python blender_child.py -- ARGS`` or,
with the bpy wheel, as ``python blender_child.py ARGS``. Only the standard library and bpy
may be used here: Blender's own Python cannot see the worker's virtualenv.

Events go to stdout as single lines ``@@FLAMENCO@@ {json}``; everything else Blender prints
on the same stream stays a plain log line for the parent. Commands arrive on stdin, one JSON
object per line: ``{"op": "render", ...}``, ``{"op": "script", ...}`` (a job's own script,
blender-script) or ``{"op": "quit"}``. Started without ``--blend``,
it waits on standby, bpy already imported, for
``{"op": "open", "blend": ..., "device": ..., "scripts": true}``.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import re
import runpy
import sys
import threading
import time
import traceback
from typing import Any, NoReturn

import bpy

MARKER = "@@FLAMENCO@@"
GPU_PREFERENCE = ("OPTIX", "CUDA", "HIP", "ONEAPI", "METAL")
DEVICES = ("CPU", "GPU", *GPU_PREFERENCE)
SAMPLE_RE = re.compile(r"Sample (\d+)/(\d+)")
HASH_RUN_RE = re.compile(r"#+")
EXIT_UNUSABLE = 2

_emit_lock = threading.Lock()
_current_frame: int | None = None  # set while bpy renders, read by the stats handler
_command_frame: int | None = None  # frame of the running command, named in error events
_last_progress: tuple[int, int, int] | None = None
_script_errors: list[str] = []  # what the file's own scripts raised during this command


def emit(event: str, **fields: Any) -> None:
    """Write one event line; the lock keeps render-thread callbacks from interleaving."""
    line = json.dumps({"event": event, **fields}, separators=(",", ":"))
    with _emit_lock:
        # The leading newline guarantees the marker starts a line even if Blender's C code
        # left a partial line on stdout; the parent ignores the empty line.
        sys.stdout.write(f"\n{MARKER} {line}\n")
        sys.stdout.flush()


def die(message: str, code: int = EXIT_UNUSABLE) -> NoReturn:
    """Report an error and leave at once (skipping Blender's slow, chatty teardown)."""
    emit("error", message=message)
    _exit(code)


def _exit(code: int) -> NoReturn:
    sys.stdout.flush()
    sys.stderr.flush()
    # Blender writes through C stdio, which os._exit would not flush. Without a libc to
    # load (Windows) there is nothing to lose.
    with contextlib.suppress(Exception):
        ctypes.CDLL(None).fflush(None)
    os._exit(code)


def script_args(argv: list[str]) -> list[str]:
    """Blender passes our arguments after ``--``; a plain Python run passes them directly."""
    if "--" in argv:
        return argv[argv.index("--") + 1 :]
    return argv[1:]


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="blender_child")
    # Without --blend the child waits on standby (bpy imported) for an "open" command.
    parser.add_argument("--blend")
    parser.add_argument("--device", default="CPU", type=str.upper, choices=DEVICES)
    # The file's own scripts (drivers, registered text blocks) run unless the job says not.
    parser.add_argument("--no-scripts", dest="scripts", action="store_false")
    # On standby, first print Cycles' devices as cycles_probe.py does: a Worker's first
    # Blender answers at its start, instead of a Blender run of its own for the probe.
    parser.add_argument("--list-devices", action="store_true")
    return parser.parse_args(script_args(argv))


def wait_for_open() -> tuple[str, str, bool]:
    """On standby: the file, device and script trust of the first job this process gets."""
    emit("standby", pid=os.getpid())
    while True:
        line = sys.stdin.readline()
        if not line:
            _exit(0)
        if not line.strip():
            continue
        cmd = json.loads(line)
        if cmd.get("op") == "quit":
            _exit(0)
        if cmd.get("op") != "open":
            die(f"A Blender on standby takes 'open' or 'quit', not {cmd.get('op')!r}.")
        device = str(cmd.get("device", "CPU")).upper()
        if device not in DEVICES:
            die(f"Unknown render device {device!r}; expected one of {', '.join(DEVICES)}.")
        return str(cmd["blend"]), device, bool(cmd.get("scripts", True))


# --- loading -------------------------------------------------------------------------------


def open_blend(path: str, scripts: bool = True) -> bpy.types.Scene:
    """Load the file; with `scripts`, its Python drivers and registered text blocks run, as
    on a workstation that trusts it (production files need them). Said explicitly, so that
    neither Blender's preference nor `-y` decides."""
    try:
        bpy.ops.wm.open_mainfile(filepath=path, use_scripts=scripts)
    except RuntimeError as exc:
        die(f"Could not read blend file {path}: {clean_error(exc)}")
    scene = bpy.context.scene
    if scene is None:
        die(f"Blend file {path} has no scene to render.")
    return scene


def report_missing_files() -> None:
    """Name every file the scene uses that is not where the loaded file expects it.

    Blender renders on with missing textures (pink) and libraries (absent objects); the
    task log must say so. Sequence and UDIM patterns are not single files and are skipped.
    """
    unread = unread_cache_folders()
    for path in sorted(set(bpy.utils.blend_paths(absolute=True))):
        if "#" in path or "<UDIM>" in path or "<UVTILE>" in path:
            continue
        if os.path.normpath(path) in unread:
            continue
        if not os.path.exists(path):
            print(f"Flamenco: missing file after loading: {path}", flush=True)


def unread_cache_folders() -> set[str]:
    """Cache paths Blender lists but does not read: internal point caches, fluid bake dirs."""
    caches = []
    for obj in bpy.data.objects:
        caches += [system.point_cache for system in getattr(obj, "particle_systems", [])]
        for modifier in obj.modifiers:
            if getattr(modifier, "point_cache", None) is not None:
                caches.append(modifier.point_cache)
            domain = getattr(modifier, "domain_settings", None)
            if domain is not None and getattr(domain, "cache_directory", ""):
                caches.append(bpy.path.abspath(domain.cache_directory))
    folders = set()
    for cache in caches:
        if isinstance(cache, str):
            folders.add(os.path.normpath(cache))
        elif not cache.use_external and cache.filepath:
            folders.add(os.path.normpath(bpy.path.abspath(cache.filepath)))
    return folders


def clean_error(exc: BaseException) -> str:
    """bpy errors look like 'Error: text\\n'; keep only the text."""
    text = str(exc).strip()
    return text.removeprefix("Error: ").strip() or type(exc).__name__


def effective_resolution(scene: bpy.types.Scene) -> list[int]:
    render = scene.render
    pct = render.resolution_percentage
    return [render.resolution_x * pct // 100, render.resolution_y * pct // 100]


def frame_size(scene: bpy.types.Scene) -> list[int] | None:
    """The pixels of a frame's file; None where Blender writes another size (a border render
    cropped to its border, stereo views side by side)."""
    render = scene.render
    if (render.use_border and render.use_crop_to_border) or render.use_multiview:
        return None
    return effective_resolution(scene)


# --- devices -------------------------------------------------------------------------------


def configure_device(scene: bpy.types.Scene, device: str) -> None:
    if device == "CPU":
        # Be explicit: a file saved on a GPU machine must not silently expect a GPU here.
        scene.cycles.device = "CPU"
        return
    kinds = GPU_PREFERENCE if device == "GPU" else (device,)
    for kind in kinds:
        if enable_gpu_kind(kind):
            scene.cycles.device = "GPU"
            return
    die(f"Found no Cycles device of type {device}.")


def enable_gpu_kind(kind: str) -> bool:
    """Select `kind` as compute backend and enable its devices; False if none exist."""
    cprefs = bpy.context.preferences.addons["cycles"].preferences
    try:
        cprefs.compute_device_type = kind
    except TypeError:  # The backend is not compiled in on this platform (e.g. METAL on Linux).
        return False
    refresh = getattr(cprefs, "refresh_devices", None) or cprefs.get_devices
    refresh()
    found = False
    for dev in cprefs.devices:
        # CPU devices are listed too; leave them off so "GPU" means GPU only.
        dev.use = dev.type == kind
        found = found or dev.use
    return found


# --- progress ------------------------------------------------------------------------------


@bpy.app.handlers.persistent
def on_render_stats(*args: Any) -> None:
    """Blender 5 passes the stats string; 3.4 passes nothing (its CLI prints ``Fra:`` lines)."""
    global _last_progress
    text = args[0] if args and isinstance(args[0], str) else None
    if text is None or _current_frame is None:
        return  # Printing here in 3.4 would split Blender's half-written Fra: line.
    match = SAMPLE_RE.search(text)
    if not match:
        return
    key = (_current_frame, int(match[1]), int(match[2]))
    if key != _last_progress:
        _last_progress = key
        emit("progress", frame=key[0], sample=key[1], samples=key[2])


# --- the file's own scripts ---------------------------------------------------------------


def on_exception(kind: type[BaseException], value: BaseException, tb: Any) -> None:
    """Blender catches what a handler raises and prints it; remember it when the code is the
    file's own (its text blocks: "<file>.blend/<text>") and a render command runs, so that the
    command fails as the file's fault instead of rendering what the script meant to change."""
    sys.__excepthook__(kind, value, tb)  # the traceback stays in the task's log
    inside = bpy.data.filepath + os.sep
    own = [f.filename for f in traceback.extract_tb(tb) if f.filename.startswith(inside)]
    if own and _command_frame is not None:
        name = own[-1][len(inside) :]
        _script_errors.append(f"The file's own script {name} raised {kind.__name__}: {value}")


def check_scripts(frame: int) -> None:
    if _script_errors:
        raise RuntimeError(f"{_script_errors[0]} (frame {frame})")


# --- rendering -----------------------------------------------------------------------------


def frame_basename(pattern: str, frame: int) -> str:
    """Expand each run of '#' to the zero-padded frame; write_still does not do it for us."""
    if "#" not in pattern:
        return f"{pattern}{frame:04d}"
    return HASH_RUN_RE.sub(lambda m: f"{frame:0{len(m[0])}d}", pattern)


def render_frame(scene: bpy.types.Scene, frame: int, output_dir: str, pattern: str) -> str:
    global _current_frame
    base = os.path.join(output_dir, frame_basename(pattern, frame))
    scene.frame_set(frame)
    scene.render.filepath = base
    # The job's output pattern replaces the scene's path, so its extension must come from
    # Blender: the Manager and the Server tell a frame's kind (and refuse others) by it.
    scene.render.use_file_extension = True
    expected = base + scene.render.file_extension
    _current_frame = frame
    try:
        bpy.ops.render.render(write_still=True)
    finally:
        _current_frame = None
    check_scripts(frame)
    if not os.path.isfile(expected):
        raise RuntimeError(f"Blender rendered frame {frame} but did not write {expected}")
    return expected


# Blender 5 sorts file formats by media type; a scene saved with video output offers no
# image formats until its media type is switched back to images.
MEDIA_TYPES = {"OPEN_EXR_MULTILAYER": "MULTI_LAYER_IMAGE", "FFMPEG": "VIDEO"}


def set_file_format(scene: bpy.types.Scene, fmt: str) -> None:
    settings = scene.render.image_settings
    if hasattr(settings, "media_type"):
        settings.media_type = MEDIA_TYPES.get(fmt, "IMAGE")
    try:
        settings.file_format = fmt
    except TypeError:  # bpy's own message is a raw enum dump
        known = settings.bl_rna.properties["file_format"].enum_items.keys()
        raise ValueError(f"Unknown output format {fmt!r}; this Blender knows {known}") from None


FROM_SCENE = "SCENE"  # flamenco.core.compiler.FROM_SCENE; this file runs inside Blender alone


def use_output_format(scene: bpy.types.Scene, fmt: str) -> None:
    """Render with the named file format, or keep the file's own output settings (its
    format, colour depth, codec, passes and view layers) for SCENE."""
    if fmt != FROM_SCENE:
        set_file_format(scene, fmt)
    elif scene.render.is_movie_format:
        # A video cannot be written one frame at a time by many machines: such a scene
        # renders its frames as PNG (the preview video option makes the video).
        video = scene.render.image_settings.file_format
        set_file_format(scene, "PNG")
        print(f"Flamenco: the scene's output format {video} is a video; frames are PNG", flush=True)


def set_persistent_data(scene: bpy.types.Scene, on: bool) -> None:
    """Cycles keeps the BVH, images and kernels of a render for the next one in this process,
    so a job's later frames skip building them; the task log says which way it renders."""
    scene.render.use_persistent_data = on
    print(f"Flamenco: Cycles persistent data {'on' if on else 'off'}", flush=True)


def use_tile_border(scene: bpy.types.Scene, border: list[float]) -> None:
    """Render one tile of the frame: a border render that keeps the frame's size, the rest
    left empty (flamenco.core.tiles chose the fractions). Seeds stay the scene's own."""
    render = scene.render
    render.use_border, render.use_crop_to_border = True, False
    (render.border_min_x, render.border_max_x, render.border_min_y, render.border_max_y) = border
    print(f"Flamenco: rendering the tile with border {border}", flush=True)


def run_render(scene: bpy.types.Scene, cmd: dict[str, Any]) -> None:
    frames = [int(f) for f in cmd["frames"]]
    output_dir = os.path.abspath(cmd["output_dir"])
    os.makedirs(output_dir, exist_ok=True)
    use_output_format(scene, cmd.get("output_format") or FROM_SCENE)
    if cmd.get("border"):
        use_tile_border(scene, [float(edge) for edge in cmd["border"]])
    set_persistent_data(scene, bool(cmd.get("persistent_data", True)))
    global _command_frame
    for frame in frames:
        _command_frame = frame
        started = time.monotonic()
        path = render_frame(scene, frame, output_dir, cmd.get("output_pattern", "######"))
        emit(
            "frame",
            frame=frame,
            path=path,
            seconds=round(time.monotonic() - started, 3),
            # What the Worker checks the file against (flamenco.frame_check).
            size=frame_size(scene),
            file_format=scene.render.image_settings.file_format,
        )
    _command_frame = None
    emit("done", frames=frames, persistent_data=scene.render.use_persistent_data)


def run_script(cmd: dict[str, Any]) -> None:
    """Run a job's script with its file open, in the job's folder, as ``__main__``; it gets
    FLAMENCO_ARGS (its arguments) and FLAMENCO_OUTPUTS (a list it appends the paths of the
    files it made to: absolute, or relative to the job's folder)."""
    if cmd.get("frame") is not None:
        bpy.context.scene.frame_set(int(cmd["frame"]))
    path, job_dir = str(cmd["script"]), str(cmd["job_dir"])
    with open(path, encoding="utf-8") as source:
        code = source.read()
    outputs: list[Any] = []
    namespace = {
        "__name__": "__main__",
        "__file__": path,
        "FLAMENCO_ARGS": [str(arg) for arg in cmd.get("args", [])],
        "FLAMENCO_OUTPUTS": outputs,
    }
    previous = os.getcwd()
    os.chdir(job_dir)
    try:
        exec(compile(code, path, "exec"), namespace)
    except SystemExit as exc:
        if exc.code not in (None, 0):
            script_failed(exc)
            return
    except Exception as exc:
        script_failed(exc)
        return
    finally:
        os.chdir(previous)
    listed = [os.path.normpath(os.path.join(job_dir, os.fspath(out))) for out in outputs]
    emit("script_done", outputs=listed)


def script_failed(exc: BaseException) -> None:
    """The whole traceback goes to the task's log; the failure is its last line."""
    traceback.print_exception(exc, file=sys.stdout)
    sys.stdout.flush()
    last = traceback.format_exception_only(type(exc), exc)[-1].strip()
    emit("error", message=last, script=True)


def handle(scene: bpy.types.Scene, line: str) -> None:
    """Run one command; errors are reported and the loop goes on with the next command."""
    global _command_frame
    _command_frame = None
    _script_errors.clear()
    try:
        cmd = json.loads(line)
        op = cmd.get("op")
        if op == "quit":
            _exit(0)
        if op == "script":
            run_script(cmd)
        elif op == "render":
            run_render(scene, cmd)
        else:
            raise ValueError(f"unknown op {op!r}")
    except Exception as exc:  # any failure must reach the parent as an event
        emit("error", message=clean_error(exc), frame=_command_frame)


def command_loop(scene: bpy.types.Scene) -> NoReturn:
    while True:
        line = sys.stdin.readline()
        if not line:  # The parent went away: nobody will read our output any more.
            _exit(0)
        if line.strip():
            handle(scene, line)


def main() -> NoReturn:
    args = parse_args(sys.argv)
    if args.blend:
        blend, device, scripts = args.blend, args.device, args.scripts
    else:
        if args.list_devices:
            runpy.run_path(
                os.path.join(os.path.dirname(__file__), "cycles_probe.py"), run_name="__main__"
            )
        blend, device, scripts = wait_for_open()
    scene = open_blend(os.path.abspath(blend), scripts)
    try:
        configure_device(scene, device)
    except Exception as exc:  # e.g. a broken cycles add-on: still tell the parent
        die(f"Could not configure Cycles device {device}: {clean_error(exc)}")
    bpy.app.handlers.render_stats.append(on_render_stats)
    sys.excepthook = on_exception
    report_missing_files()
    emit(
        "ready",
        blender_version=bpy.app.version_string,
        pid=os.getpid(),
        resolution=effective_resolution(scene),
    )
    command_loop(scene)


if __name__ == "__main__":
    main()
