"""Fetching a job's frames and other files into a folder, each written whole and checked, or
not at all."""

from __future__ import annotations

import hashlib
from pathlib import Path

from rich.progress import Progress

from flamenco import wire
from flamenco.blobs import HashMismatch, safe_join, temp_beside
from flamenco.cli.console import err
from flamenco.client import ApiError, SyncApi, api_path
from flamenco.core.names import check_artifact_name


def download_frames(api: SyncApi, job_id: str, dest: Path) -> list[Path]:
    frames = api.call("GET", api_path("jobs", job_id, "frames"), wire.FrameList).root
    dest.mkdir(parents=True, exist_ok=True)
    written = []
    with Progress(console=err, transient=True) as bar:
        task = bar.add_task("downloading", total=len(frames))
        for info in frames:
            written.append(_download_one(api, job_id, info, dest))
            bar.advance(task)
    return written


def download_artifacts(api: SyncApi, job_id: str, dest: Path) -> list[Path]:
    """The job's other files than frames (its preview video, a script's files), next to the
    frames, each at its path in the job's folder."""
    artifacts = api.call("GET", api_path("jobs", job_id, "artifacts"), wire.ArtifactList).root
    dest.mkdir(parents=True, exist_ok=True)
    return [
        _fetch(
            api,
            api_path("jobs", job_id, "artifacts", info.name),
            safe_join(dest, check_artifact_name(info.name)),
            info.sha256,
            info.name,
        )
        for info in artifacts
    ]


def _download_one(api: SyncApi, job_id: str, info: wire.FrameInfo, dest: Path) -> Path:
    target = safe_join(dest, info.filename)
    url = api_path("jobs", job_id, "frames", info.frame)
    return _fetch(api, url, target, info.sha256, f"Frame {info.frame}")


def _fetch(api: SyncApi, url: str, target: Path, sha256: str, what: str) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = temp_beside(target)
    digest = hashlib.sha256()
    try:
        with api.http.stream("GET", url) as response:
            if response.is_error:
                response.read()
                raise ApiError(response.status_code, response.json().get("detail", ""))
            with partial.open("wb") as f:
                for chunk in response.iter_bytes():
                    digest.update(chunk)
                    f.write(chunk)
        if digest.hexdigest() != sha256:
            raise HashMismatch(f"{what} arrived damaged (hash mismatch); try again.")
        partial.replace(target)
    finally:
        partial.unlink(missing_ok=True)  # gone already when it was renamed into place
    return target
