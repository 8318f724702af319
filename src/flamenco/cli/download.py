"""Fetching a job's frames into a folder, each written whole and checked, or not at all."""

from __future__ import annotations

import hashlib
from pathlib import Path

from rich.progress import Progress

from flamenco import wire
from flamenco.blobs import HashMismatch, safe_join
from flamenco.cli.console import err
from flamenco.client import ApiError, SyncApi, api_path


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


def _download_one(api: SyncApi, job_id: str, info: wire.FrameInfo, dest: Path) -> Path:
    target = safe_join(dest, info.filename)
    partial = target.with_name(target.name + ".partial")
    digest = hashlib.sha256()
    with api.http.stream("GET", api_path("jobs", job_id, "frames", info.frame)) as response:
        if response.is_error:
            response.read()
            raise ApiError(response.status_code, response.json().get("detail", ""))
        with partial.open("wb") as f:
            for chunk in response.iter_bytes():
                digest.update(chunk)
                f.write(chunk)
    if digest.hexdigest() != info.sha256:
        partial.unlink()
        raise HashMismatch(f"Frame {info.frame} arrived damaged (hash mismatch); try again.")
    partial.replace(target)
    return target
