"""Submitting a scene: hash its files, upload what the Server lacks, create the job.

Files are read where they are (only rewritten .blend files are written, see packing.py), and
a file unchanged since an earlier submission is not read at all: its hash comes from the
hash cache (`render_flamenco/hash_cache.py`, shared with the add-on).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.progress import BarColumn, DownloadColumn, Progress, TaskProgressColumn, TextColumn

from flamenco import wire
from flamenco.addon.render_flamenco.hash_cache import HashCache, default_path
from flamenco.blendfile import blend_problem, blend_version_text, scene_resolution
from flamenco.cli.console import err
from flamenco.cli.job_types import fetch_job_types
from flamenco.client import SyncApi
from flamenco.core.compiler import JobType, read_settings
from flamenco.core.job_types.blender_render import AUTO_CHUNK
from flamenco.core.names import check_label
from flamenco.core.notify import check_notify_url
from flamenco.core.settings_schema import (
    SUBMITTED_DIR,
    SettingField,
    local_job_path,
    missing_local_file,
    parse_settings,
    setting_fields,
)
from flamenco.core.tiles import grid_shape
from flamenco.job_type_registry import installed_job_types, unknown_job_type
from flamenco.packing import Collected, pack_scene

UPLOAD_ROUNDS = 3  # ask, upload, ask again (renewing the claims); once more if a blob went


@dataclass
class SubmitRequest:
    scene: Path | None  # None: a job type without a scene (ffmpeg)
    frames: str | None  # None: not given (a job type without frames)
    chunk: int | str = 1  # frames per task, or "auto"
    name: str | None = None
    priority: int = 50
    sites: list[str] = field(default_factory=list)
    allow_missing: bool = False
    settings: dict[str, Any] = field(default_factory=dict)
    notify: str | None = None  # an http(s) URL told of the job's end
    after: list[str] = field(default_factory=list)  # jobs that must complete first
    job_type: str = "blender-render"
    assignments: list[str] = field(default_factory=list)  # --set key=value, read per setting


# Settings that submit's options always give: left out for a job type without them while they
# hold the option's default (a value the user chose goes, and the Server names it).
_OPTION_DEFAULTS: dict[str, object] = {"chunk_size": 1, "render_device": "CPU"}


@dataclass(frozen=True)
class ChosenType:
    """The job type of a submission: its settings, and the type itself when installed here
    too (its model then checks the settings before anything is uploaded)."""

    name: str
    fields: list[SettingField]
    local: JobType | None

    def marked(self, kind: str) -> list[str]:
        return [f.name for f in self.fields if f.file == kind]


def choose_job_type(api: SyncApi, name: str) -> ChosenType:
    """The job type `name` as installed here, else as the Server lists it."""
    local = installed_job_types().get(name)
    if local is not None:
        return ChosenType(name, setting_fields(local.Settings.model_json_schema()), local)
    listing = {job_type.name: job_type for job_type in fetch_job_types(api)}
    if name not in listing:
        raise unknown_job_type(name, list(listing))
    return ChosenType(name, setting_fields(listing[name].settings_schema), None)


def requested_settings(req: SubmitRequest, chosen: ChosenType) -> dict[str, Any]:
    """The options' settings and the --set ones (which win), for the chosen type."""
    names = {f.name for f in chosen.fields}
    frames = {} if req.frames is None else {"frames": req.frames}
    given = {**frames, "chunk_size": req.chunk, **req.settings}
    settings = {
        key: value
        for key, value in given.items()
        if key in names or _OPTION_DEFAULTS.get(key, object()) != value
    }
    return settings | parse_settings(chosen.fields, req.assignments, chosen.name)


def local_files(chosen: ChosenType, settings: dict[str, Any]) -> dict[str, Path]:
    """The files named by the settings the type marks as local: setting -> file."""
    found = {}
    for key in chosen.marked("local"):
        if settings.get(key) is None:
            continue
        path = Path(str(settings[key])).expanduser()
        if not path.is_file():
            raise missing_local_file(key, path)
        found[key] = path.resolve()
    return found


def parse_chunk(text: str) -> int | str:
    """`--chunk`: a whole number of frames per task above 0, or "auto"."""
    if text.strip().lower() == AUTO_CHUNK:
        return AUTO_CHUNK
    if re.fullmatch(r"[0-9]+", text.strip()) and int(text) > 0:
        return int(text)
    raise ValueError(f"--chunk must be a whole number of frames above 0 or 'auto', got {text!r}.")


def parse_after(values: list[str]) -> list[str]:
    """`--after`, repeated or comma-separated: the job ids, each once, in their order."""
    ids = (part.strip() for value in values for part in value.split(","))
    return list(dict.fromkeys(job_id for job_id in ids if job_id))


def upload_missing(
    api: SyncApi, files: dict[str, Path], written: set[str] | None = None
) -> dict[str, str]:
    """Upload the files the Server lacks; return the manifest (path in job -> hash).

    `written`: the paths in the job whose files were made for this submission (never
    remembered by the hash cache).

    The Server is asked again after the uploads: that renews its claim on every blob of the
    job (`server/blob_gc.py`), so a delete of another job while a long upload ran cannot have
    freed one; any that went anyway is sent again.
    """
    with HashCache(default_path()) as cache:
        manifest = cache.manifest(files, written or set())
        stats = cache.stats
    err.print(
        f"Hashed {stats.hashed} of {len(manifest)} files ({stats.hashed_bytes} bytes read); "
        f"{stats.remembered} unchanged since they were last hashed."
    )
    query = wire.BlobQuery(hashes=sorted(set(manifest.values())))
    sent: set[str] = set()
    total = 0
    for _ in range(UPLOAD_ROUNDS):
        answer = api.call("POST", "/api/v1/blobs/missing", wire.BlobQueryResult, query)
        missing = set(answer.missing)
        if not missing:
            break
        to_send = {h: files[p] for p, h in manifest.items() if h in missing}
        total += _upload(api, to_send)
        sent.update(to_send)
    err.print(
        f"Files: uploaded {len(sent)} of {len(manifest)} files ({total} bytes); "
        "the Server had the others."
    )
    return manifest


def _upload(api: SyncApi, to_send: dict[str, Path]) -> int:
    total = sum(path.stat().st_size for path in to_send.values())
    with Progress(
        TextColumn("uploading"),
        BarColumn(),
        TaskProgressColumn(),
        DownloadColumn(),
        console=err,
        transient=True,
    ) as bar:
        task = bar.add_task("upload", total=total)
        for sha256, path in to_send.items():
            api.upload_blob(path, sha256, progress=lambda n: bar.advance(task, n))
    return total


class MissingDependencies(ValueError):
    """The scene uses files that do not exist; the message lists them."""


def collect_files(req: SubmitRequest) -> tuple[str, dict[str, Path], Collected | None]:
    """The scene's path in the job and every file to send, dependencies included.

    A file that is not a usable .blend is refused here, with the sentence the Server would
    answer (the same check, `server/jobs.py`): before anything is read further or uploaded,
    as a file given by mistake may be gigabytes.
    """
    if problem := blend_problem(req.scene, req.scene.name):
        raise ValueError(problem)
    packed = pack_scene(req.scene)
    if packed.missing and not req.allow_missing:
        packed.close()
        names = ", ".join(str(p) for p in packed.missing)
        raise MissingDependencies(
            f"{len(packed.missing)} file(s) the scene uses are missing: {names}; "
            "pass --allow-missing to submit anyway."
        )
    for path in packed.missing:
        err.print(f"Warning: missing dependency {path}", style="yellow")
    return packed.blend, packed.files, packed


def scene_needed(req: SubmitRequest, chosen: ChosenType) -> list[str]:
    """The settings the scene fills (those the type marks, or its 'blend'); a scene given to
    a type without any, or none to a type with some, is refused."""
    filled = chosen.marked("scene") or [f.name for f in chosen.fields if f.name == "blend"]
    if filled and req.scene is None:
        raise ValueError(f"Job type '{chosen.name}' needs a .blend file: give it first.")
    if req.scene is not None and not filled:
        raise ValueError(f"Job type '{chosen.name}' takes no .blend file; leave it out.")
    return filled


def submit_scene(api: SyncApi, req: SubmitRequest) -> wire.Job:
    # Everything that can be refused is, before anything is uploaded; a scene that is not
    # there first, as no other setting matters then.
    if req.scene is not None and not req.scene.is_file():
        raise FileNotFoundError(f"The scene '{req.scene}' does not exist.")
    name = check_label(req.name or (req.scene.stem if req.scene else req.job_type), "job name")
    chosen = choose_job_type(api, req.job_type)
    filled = scene_needed(req, chosen)
    settings = requested_settings(req, chosen)
    local = local_files(chosen, settings)
    if chosen.local is not None:  # the Server's own sentences, from the same model
        stand_ins = {key: f"{SUBMITTED_DIR}/{key}/{path.name}" for key, path in local.items()}
        scene = req.scene.name if req.scene else ""  # none to fill without one (scene_needed)
        read_settings(chosen.local, settings | dict.fromkeys(filled, scene) | stand_ins)
    if req.scene and settings.get("tiles") and (resolution := scene_resolution(req.scene)):
        grid_shape(int(settings["tiles"]), *resolution)  # else the Worker checks, from Blender's
    notify = check_notify_url(req.notify) if req.notify is not None else None
    blend, files, packed = collect_files(req) if req.scene else ("", {}, None)
    try:
        settings |= dict.fromkeys(filled, blend)
        folder = req.scene.resolve().parent if req.scene else Path.cwd()
        for key, path in local.items():
            job_path = local_job_path(key, path, folder, blend)
            settings[key] = job_path
            if files.setdefault(job_path, path) != path:
                raise ValueError(
                    f"The file of setting '{key}' would replace the scene's '{job_path}'."
                )
        if req.scene and "min_blender_version" in {f.name for f in chosen.fields}:
            settings = _saved_by(req) | settings
        manifest = upload_missing(api, files, packed.written if packed else None)
    finally:
        if packed is not None:
            packed.close()
    submission = wire.JobSubmission(
        name=name,
        type=chosen.name,
        priority=req.priority,
        files=manifest,
        sites=req.sites,
        notify=notify,
        after=req.after,
        settings=settings,
    )
    return api.call("POST", "/api/v1/jobs", wire.Job, submission)


def _saved_by(req: SubmitRequest) -> dict[str, str]:
    """The Blender version that saved the scene as the job's minimum, unless one was given:
    an older Blender may open a newer file but silently lose what it does not know."""
    if req.settings.get("min_blender_version"):
        return {}
    version = blend_version_text(req.scene)
    if version is None:
        return {}
    err.print(f"Minimum Blender {version}: the version that saved {req.scene.name}.")
    return {"min_blender_version": version}
