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
from flamenco.client import SyncApi
from flamenco.core.compiler import compile_job, read_output_format
from flamenco.core.job_types.blender_render import AUTO_CHUNK, read_chunk_auto
from flamenco.core.job_types.blender_render import JOB_TYPE as BLENDER_RENDER
from flamenco.core.names import check_label
from flamenco.core.notify import check_notify_url
from flamenco.core.tiles import grid_shape
from flamenco.packing import Collected, pack_scene

UPLOAD_ROUNDS = 3  # ask, upload, ask again (renewing the claims); once more if a blob went


@dataclass
class SubmitRequest:
    scene: Path
    frames: str
    chunk: int | str = 1  # frames per task, or "auto"
    name: str | None = None
    priority: int = 50
    sites: list[str] = field(default_factory=list)
    allow_missing: bool = False
    settings: dict[str, Any] = field(default_factory=dict)
    notify: str | None = None  # an http(s) URL told of the job's end
    after: list[str] = field(default_factory=list)  # jobs that must complete first


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

    A file that is not a .blend is sent alone, so that the Server's refusal explains why.
    """
    if not req.scene.is_file():
        raise FileNotFoundError(f"The scene '{req.scene}' does not exist.")
    if req.scene.suffix != ".blend" or blend_problem(req.scene, req.scene.name):
        return req.scene.name, {req.scene.name: req.scene}, None
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


def submit_scene(api: SyncApi, req: SubmitRequest) -> wire.Job:
    name = check_label(req.name or req.scene.stem, "job name")  # before uploading anything
    read_output_format(req.settings)
    read_chunk_auto({"chunk_size": req.chunk, **req.settings})
    if "tiles" in req.settings:  # its sentences before anything is uploaded
        check = {"blend": "check.blend", "frames": req.frames, "chunk_size": req.chunk}
        compile_job(BLENDER_RENDER, {**req.settings, **check})
        if resolution := scene_resolution(req.scene):  # else the Worker checks, from Blender's
            grid_shape(int(req.settings["tiles"]), *resolution)  # TileError: its sentence
    notify = check_notify_url(req.notify) if req.notify is not None else None
    blend, files, packed = collect_files(req)
    settings = {**req.settings, **_saved_by(req)}
    try:
        manifest = upload_missing(api, files, packed.written if packed else None)
    finally:
        if packed is not None:
            packed.close()
    submission = wire.JobSubmission(
        name=name,
        priority=req.priority,
        files=manifest,
        sites=req.sites,
        notify=notify,
        after=req.after,
        settings={"blend": blend, "frames": req.frames, "chunk_size": req.chunk, **settings},
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
