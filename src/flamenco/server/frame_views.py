"""A frame as a picture a browser can show, for the Dashboard's viewer: the frame itself when
browsers draw its type, else a full-size JPEG made from it once (an EXR's beauty in sRGB,
`flamenco.images`) and kept beside the job's thumbnails until the job is deleted."""

from __future__ import annotations

import logging
from pathlib import Path

from flamenco.core.media import file_type, shown_as_is
from flamenco.errors import NotFound
from flamenco.images import save_jpeg
from flamenco.server.jobs import JobService

log = logging.getLogger("flamenco.server.frame_views")

VIEW_QUALITY = 92


def frame_view(jobs: JobService, job_id: str, frame: int) -> tuple[Path, str]:
    """The file to show for a frame and its media type; blocking (run it off the event loop)."""
    source, filename = jobs.frame_file(job_id, frame)
    if shown_as_is(filename):
        return source, file_type(filename)[0]
    folder = jobs.thumbnails_root / job_id
    dest = folder / f"{frame}.view-{source.name[:16]}.jpg"  # blobs are named by their hash
    if not dest.is_file():
        _write_view(source, dest, frame, job_id)
    return dest, "image/jpeg"


def _write_view(source: Path, dest: Path, frame: int, job_id: str) -> None:
    try:
        save_jpeg(source, dest, VIEW_QUALITY)
    except Exception as exc:
        log.info("frame %d of job %s: no view (%s)", frame, job_id, exc, extra={"job": job_id})
        raise NotFound(f"Frame {frame} of job '{job_id}' cannot be shown as a picture.") from None
    for older in dest.parent.glob(f"{frame}.view-*.jpg"):  # views of earlier renders
        if older != dest:
            older.unlink(missing_ok=True)
