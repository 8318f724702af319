"""How a job's files (frames, artifacts) are answered: images and videos by their own type, to
show in a page; anything else as an opaque download.

The name of a file comes from a Worker, so a browser must never be told to run it: a frame
called `x.html` or `x.svg` served as `text/html` or `image/svg+xml` would run its scripts
with the Dashboard's cookies. Only types a browser cannot execute are named; everything
else is `application/octet-stream` with `Content-Disposition: attachment`, and every answer
carries `X-Content-Type-Options: nosniff` so that no browser guesses otherwise.
"""

from __future__ import annotations

from pathlib import PurePosixPath

OPAQUE = "application/octet-stream"
NOSNIFF = {"X-Content-Type-Options": "nosniff"}

# What Blender writes, and the preview video. No SVG: it can carry scripts.
VIEWABLE_TYPES: dict[str, str] = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".webp": "image/webp",
    ".bmp": "image/bmp",
    ".rgb": "image/x-rgb",
    ".tif": "image/tiff",
    ".tiff": "image/tiff",
    ".exr": "image/x-exr",
    ".hdr": "image/vnd.radiance",
    ".tga": "image/x-tga",
    ".jp2": "image/jp2",
    ".j2c": "image/jp2",
    ".dpx": "image/x-dpx",
    ".cin": "image/x-cineon",
    ".mp4": "video/mp4",
    ".m4v": "video/mp4",
    ".mov": "video/quicktime",
    ".mkv": "video/x-matroska",
    ".webm": "video/webm",
    ".avi": "video/x-msvideo",
    ".ogv": "video/ogg",
}
VIEWABLE = frozenset(VIEWABLE_TYPES.values())
# Frames every browser draws in an <img> as they are; others (EXR, TIFF, DPX…) are shown in the
# Dashboard's viewer as a JPEG made from them (`server/frame_views.py`).
BROWSER_IMAGES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp"})
BROWSER_IMAGE_TYPES = tuple(sorted({VIEWABLE_TYPES[ext] for ext in BROWSER_IMAGES}))


def shown_as_is(filename: str) -> bool:
    """Whether a browser can show this frame file itself."""
    return PurePosixPath(filename).suffix.lower() in BROWSER_IMAGES


def file_type(filename: str) -> tuple[str, str]:
    """The media type and the disposition (`inline` or `attachment`) a job's file is served
    with, from its name."""
    media_type = VIEWABLE_TYPES.get(PurePosixPath(filename).suffix.lower())
    return (media_type, "inline") if media_type else (OPAQUE, "attachment")


def relayed_file_headers(content_type: str | None, disposition: str | None) -> dict[str, str]:
    """The type and disposition headers to pass on for a job's file fetched from elsewhere
    (the Dashboard relaying the Server): kept for an image or video type, else made an opaque
    download whatever the other side said."""
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    if media_type in VIEWABLE:
        headers = {"content-type": media_type}
        if disposition:
            headers["content-disposition"] = disposition
        return headers
    _, _, parameters = (disposition or "").partition(";")
    attachment = f"attachment;{parameters}" if parameters.strip() else "attachment"
    return {"content-type": OPAQUE, "content-disposition": attachment}
