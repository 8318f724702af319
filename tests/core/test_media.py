"""How a job's files are answered: only images and videos by their own type."""

from __future__ import annotations

import pytest

from flamenco.core.media import OPAQUE, file_type, relayed_file_headers

DOWNLOAD = (OPAQUE, "attachment")


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("frame_0001.png", ("image/png", "inline")),
        ("FRAME_0001.PNG", ("image/png", "inline")),
        ("f.jpg", ("image/jpeg", "inline")),
        ("f.jpeg", ("image/jpeg", "inline")),
        ("f.exr", ("image/x-exr", "inline")),
        ("f.tif", ("image/tiff", "inline")),
        ("f.webp", ("image/webp", "inline")),
        ("preview.mp4", ("video/mp4", "inline")),
        ("f.mkv", ("video/x-matroska", "inline")),
        ("frame.html", DOWNLOAD),
        ("frame.htm", DOWNLOAD),
        ("picture.svg", DOWNLOAD),  # an image that can run scripts
        ("page.xhtml", DOWNLOAD),
        ("script.js", DOWNLOAD),
        ("notes.txt", DOWNLOAD),
        ("frame.png.html", DOWNLOAD),
        ("no-extension", DOWNLOAD),
        ("", DOWNLOAD),
    ],
)
def test_a_file_is_shown_only_as_an_image_or_video(name: str, expected: tuple[str, str]) -> None:
    assert file_type(name) == expected


@pytest.mark.parametrize(
    ("content_type", "disposition", "expected"),
    [
        (
            "image/png",
            'inline; filename="f.png"',
            {"content-type": "image/png", "content-disposition": 'inline; filename="f.png"'},
        ),
        ("video/mp4", None, {"content-type": "video/mp4"}),
        (
            "text/html; charset=utf-8",
            'inline; filename="x.html"',
            {"content-type": OPAQUE, "content-disposition": 'attachment; filename="x.html"'},
        ),
        (
            "image/svg+xml",
            None,
            {"content-type": OPAQUE, "content-disposition": "attachment"},
        ),
        (None, None, {"content-type": OPAQUE, "content-disposition": "attachment"}),
        (
            "application/octet-stream",
            "attachment; filename*=utf-8''%C3%A9.bin",
            {
                "content-type": OPAQUE,
                "content-disposition": "attachment; filename*=utf-8''%C3%A9.bin",
            },
        ),
    ],
)
def test_a_relayed_file_keeps_only_an_image_or_video_type(
    content_type: str | None, disposition: str | None, expected: dict[str, str]
) -> None:
    assert relayed_file_headers(content_type, disposition) == expected
