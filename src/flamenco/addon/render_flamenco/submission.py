"""One job submission, done by a background thread while Blender's main thread polls it.

Nothing here touches bpy: the operator saves a copy of the scene and reads its settings on
the main thread, then hands a JobRequest to a Submission. The thread collects the files
(read in place; only rewritten .blend files are written), hashes them (through the same hash
cache as the ``flamenco submit`` command, so unchanged files are not read again), uploads
what the Server lacks and creates the job, in the same wire format as the command. The job
is created last, in one request, so a failure at any step leaves no job behind (uploaded
blobs are content-addressed and simply reused).
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .api import FlamencoError, Server
from .hash_cache import HashCache, default_path
from .packing import Collected, collect_with_bat, collect_with_paths, load_bat

FINAL_STATUSES = ("completed", "failed", "canceled")

ProgressCallback = Callable[[float, str], None]


class Canceled(FlamencoError):
    """The artist stopped the submission before the job was created."""


@dataclass
class JobRequest:
    """Everything the thread needs; read from Blender on the main thread."""

    server_url: str
    token: str
    ca_bundle: str  # the preference; empty: the system's trust store
    blend_copy: Path  # the saved copy, alone in its own folder
    original: Path  # the artist's file, where the copy's relative paths point from
    workdir: Path  # removed when the submission ends
    name: str
    frames: str
    chunk_size: int = 1
    task_seconds: float = 0.0  # above 0: chunks by time (the CLI's --chunk auto --task-seconds)
    tiles: int = 0  # from 2: the single frame is rendered as that many tiles
    priority: int = 50
    sites: list[str] = field(default_factory=list)
    notify: str = ""  # an http(s) URL told of the job's end (the Server checks it)
    after: list[str] = field(default_factory=list)  # jobs that must complete first
    render_device: str = "CPU"
    output_format: str = "SCENE"  # the file's own output settings
    run_scripts: bool = True  # the file's drivers and text blocks run, as on a workstation
    check_blank: bool = False  # a frame whose pixels are all one value fails
    allow_missing: bool = False
    min_blender: str = ""  # the version that saved the file: the job's minimum
    use_bat: bool = True
    # Absolute paths of the scene's dependencies (bpy.utils.blend_paths), for use without BAT.
    dependencies: list[Path] = field(default_factory=list)
    hash_cache: Path | None = field(default_factory=default_path)  # None: hash every file
    # A job type other than blender-render (job_types.py): its settings as the Server takes
    # them, those the job's .blend fills, and the local files sent with it (path in the job).
    job_type: str = "blender-render"
    type_settings: dict[str, Any] = field(default_factory=dict)
    scene_settings: list[str] = field(default_factory=list)
    local_files: dict[str, Path] = field(default_factory=dict)

    def settings(self, blend: str) -> dict[str, Any]:
        if self.job_type != "blender-render":
            return {**self.type_settings, **dict.fromkeys(self.scene_settings, blend)}
        settings = {
            "blend": blend,
            "frames": self.frames,
            "chunk_size": self.chunk_size,
            "output_format": self.output_format,
            "render_device": self.render_device,
        }
        if self.min_blender:
            settings["min_blender_version"] = self.min_blender
        if not self.run_scripts:
            settings["scripts"] = False  # like the CLI's --no-scripts
        if self.check_blank:
            settings["check_blank"] = True  # like the CLI's --check-blank
        if self.tiles:
            settings["tiles"] = self.tiles  # like the CLI's --tiles
        if self.task_seconds > 0:  # like the CLI's --chunk auto --task-seconds
            settings["chunk_size"], settings["task_seconds"] = "auto", self.task_seconds
        return settings


@dataclass
class Outcome:
    job: dict[str, Any]
    uploaded: int  # files sent
    total: int  # files in the job
    uploaded_bytes: int
    method: str  # how the files were found: "bat" or "paths"
    missing: list[str]
    hashed: int = 0  # files read to hash them (the others came from the hash cache)


def collect(req: JobRequest) -> Collected:
    pack = load_bat() if req.use_bat else None
    if pack is not None:
        collected = collect_with_bat(pack, req.blend_copy)
    else:
        collected = collect_with_paths(req.blend_copy, req.original, req.dependencies)
    if collected.missing and not req.allow_missing:
        collected.close()
        names = ", ".join(str(p) for p in collected.missing)
        raise FlamencoError(
            f"{len(collected.missing)} file(s) the scene uses are missing: {names}; "
            "tick 'Allow missing files' to submit anyway."
        )
    return collected


def submit_blocking(
    req: JobRequest,
    progress: ProgressCallback | None = None,
    canceled: threading.Event | None = None,
) -> Outcome:
    """Collect, upload and create the job; raise FlamencoError with the reason if it fails."""

    def report(fraction: float, message: str) -> None:
        if canceled is not None and canceled.is_set():
            raise Canceled("The submission was canceled; no job was created.")
        if progress is not None:
            progress(fraction, message)

    server = Server(req.server_url, req.token, ca_bundle=req.ca_bundle)
    report(0.02, "Collecting the scene's files")
    collected = collect(req)
    try:
        return _send(server, req, collected, report)
    finally:
        collected.close()


def _send(
    server: Server, req: JobRequest, collected: Collected, report: ProgressCallback
) -> Outcome:
    files = {**collected.files, **req.local_files}
    for rel, path in req.local_files.items():
        if collected.files.get(rel, path) != path:
            raise FlamencoError(f"The file '{path}' would replace the scene's '{rel}' in the job.")
    report(0.10, f"Hashing {len(files)} files")
    # The copy of the scene is new with every submission: never worth remembering.
    fresh = collected.written | {rel for rel, p in files.items() if p == req.blend_copy}
    with HashCache(req.hash_cache) as cache:
        manifest = cache.manifest(files, fresh)
        hashed = cache.stats.hashed
    report(0.15, "Asking the Server which files it lacks")
    answer = server.post("/api/v1/blobs/missing", {"hashes": sorted(set(manifest.values()))})
    missing = set(answer.get("missing", [])) if isinstance(answer, dict) else set()
    to_send = {sha: files[rel] for rel, sha in manifest.items() if sha in missing}
    total = sum(path.stat().st_size for path in to_send.values()) or 1
    sent = 0

    def advance(n: int) -> None:
        nonlocal sent
        sent += n
        report(0.15 + 0.8 * sent / total, f"Uploading {len(to_send)} files: {sent >> 10} KiB")

    for sha, path in to_send.items():
        report(0.15 + 0.8 * sent / total, f"Uploading {path.name}")
        server.upload_blob(path, sha, advance)
    if to_send:
        # Asking again renews the Server's claim on every blob of the job, so that a delete
        # during a long upload cannot have freed its first files; any that went is sent again.
        again = server.post("/api/v1/blobs/missing", {"hashes": sorted(set(manifest.values()))})
        gone = set(again.get("missing", [])) if isinstance(again, dict) else set()
        for rel, sha in manifest.items():
            if sha in gone:
                gone.discard(sha)
                server.upload_blob(files[rel], sha, advance)
    report(0.96, "Creating the job")
    submission = {
        "name": req.name,
        "type": req.job_type,
        "priority": req.priority,
        "files": manifest,
        "settings": req.settings(collected.blend),
        "sites": req.sites,
        "notify": req.notify or None,
        "after": req.after,
    }
    job = server.post("/api/v1/jobs", submission)
    if not isinstance(job, dict) or "id" not in job:
        raise FlamencoError("The Server accepted the job but did not say its id.")
    return Outcome(
        job=job,
        uploaded=len(to_send),
        total=len(manifest),
        uploaded_bytes=sent,
        method=collected.method,
        missing=[str(p) for p in collected.missing],
        hashed=hashed,
    )


class Submission:
    """A submit_blocking() run in a daemon thread; poll() is safe from Blender's main thread."""

    def __init__(self, req: JobRequest) -> None:
        self.req = req
        self._lock = threading.Lock()
        self._canceled = threading.Event()
        self._thread = threading.Thread(target=self.run, name="flamenco-submit", daemon=True)
        self.fraction = 0.0
        self.message = "Starting"
        self.done = False
        self.error = ""
        self.outcome: Outcome | None = None

    def start(self) -> Submission:
        self._thread.start()
        return self

    def cancel(self) -> None:
        self._canceled.set()

    def _progress(self, fraction: float, message: str) -> None:
        with self._lock:
            self.fraction, self.message = min(max(fraction, 0.0), 1.0), message

    def run(self) -> None:
        outcome: Outcome | None = None
        error = ""
        try:
            outcome = submit_blocking(self.req, self._progress, self._canceled)
        except FlamencoError as exc:
            error = str(exc)
        except Exception as exc:  # a bug must still end the submission with a message
            error = f"The submission failed unexpectedly ({exc.__class__.__name__}: {exc})."
        finally:
            shutil.rmtree(self.req.workdir, ignore_errors=True)
        with self._lock:
            self.outcome, self.error, self.done = outcome, error, True
            self.fraction = 1.0 if outcome else self.fraction
            self.message = "Submitted" if outcome else error

    def poll(self) -> tuple[bool, float, str]:
        """(done, fraction, message) as of now."""
        with self._lock:
            return self.done, self.fraction, self.message

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)
