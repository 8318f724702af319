"""flamenco.frame_check, table-driven on real files written here: PNG, JPEG and TIFF with Pillow,
EXR with the OpenEXR library; good ones, and truncated, empty, wrong-size, wrong-kind and blank."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import OpenEXR
import pytest
from PIL import Image

from exrkit import HEADER, rgba, write_exr
from flamenco import exr_strips
from flamenco.frame_check import BadFrame, FrameExpectation, check_frame

W, H = 64, 48
NOISE = np.random.default_rng(7).integers(0, 256, (H, W, 3), np.uint8)


def pillow(fmt: str, pixels: np.ndarray = NOISE) -> Callable[[Path], None]:
    return lambda path: Image.fromarray(pixels, "RGB").save(path, fmt)


def exr(colour: tuple[float, float, float] | None = None, compression=OpenEXR.ZIP_COMPRESSION):
    def write(path: Path) -> None:
        if colour is None:
            pixels = np.ones((H, W, 4), np.float16)
            pixels[..., :3] = NOISE / 255.0
        else:
            pixels = rgba(H, W, colour)
        header = dict(HEADER, compression=compression)
        OpenEXR.File(header, {"RGBA": pixels}).write(str(path))

    return write


def exr_multipart(path: Path) -> None:
    """As Blender 5 writes multilayer EXR: one part per pass."""
    combined = np.ones((H, W, 4), np.float32)
    combined[..., :3] = NOISE / 255.0
    parts = [
        OpenEXR.Part(dict(HEADER), {"ViewLayer.Combined": combined}, "ViewLayer.Combined"),
        OpenEXR.Part(
            dict(HEADER), {"ViewLayer.Depth.Z": np.full((H, W), 3.0, np.float32)}, "Depth"
        ),
    ]
    OpenEXR.File(parts).write(str(path))


def truncated(write: Callable[[Path], None], keep: float) -> Callable[[Path], None]:
    """The file cut to that fraction of it (a float), or to that many bytes (an int)."""

    def cut(path: Path) -> None:
        write(path)
        data = path.read_bytes()
        path.write_bytes(data[: keep if isinstance(keep, int) else int(len(data) * keep)])

    return cut


def empty(path: Path) -> None:
    path.write_bytes(b"")


def missing(path: Path) -> None:
    pass


def png_garbage(path: Path) -> None:
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"not a header at all" * 10)


SIZE = FrameExpectation(size=(W, H))
BLANK = FrameExpectation(size=(W, H), check_blank=True)
BLACK = np.zeros((H, W, 3), np.uint8)
DITHERED = np.random.default_rng(3).integers(0, 2, (H, W, 3), np.uint8)  # Blender's black
DARK = np.random.default_rng(4).integers(0, 3, (H, W, 3), np.uint8)  # more than dither


@pytest.mark.parametrize(
    ("name", "write", "expect", "problem"),
    [
        # Whole frames of the job's size and kind.
        ("f_0001.png", pillow("PNG"), SIZE, None),
        ("f_0001.jpg", pillow("JPEG"), SIZE, None),
        ("f_0001.jpeg", pillow("JPEG"), SIZE, None),
        ("f_0001.tif", pillow("TIFF"), SIZE, None),
        ("f_0001.exr", exr(), SIZE, None),
        ("f_0001.exr", exr(compression=OpenEXR.PIZ_COMPRESSION), SIZE, None),
        ("f_0001.exr", exr(compression=OpenEXR.NO_COMPRESSION), SIZE, None),
        ("f_0001.exr", exr_multipart, SIZE, None),
        ("f_0001.png", pillow("PNG"), FrameExpectation(file_format="PNG"), None),
        ("f_0001.exr", exr(), FrameExpectation(file_format="OPEN_EXR_MULTILAYER"), None),
        ("f_0001.jpg", pillow("JPEG"), FrameExpectation(file_format="JPEG"), None),
        ("f_0001.tiff", pillow("TIFF"), FrameExpectation(file_format="TIFF"), None),
        # Formats whose content is not read: there, exists and not empty.
        ("f_0001.bmp", pillow("BMP"), FrameExpectation(file_format="BMP"), None),
        # Not there, or nothing in it.
        ("f_0001.png", missing, SIZE, "Frame 1 (f_0001.png) does not exist."),
        ("f_0001.png", empty, SIZE, "Frame 1 (f_0001.png) is empty (0 bytes)."),
        ("f_0001.exr", empty, SIZE, "Frame 1 (f_0001.exr) is empty (0 bytes)."),
        # Cut short: the header may still read, the end does not.
        ("f_0001.png", truncated(pillow("PNG"), 0.6), SIZE, "is truncated: the PNG has no IEND"),
        ("f_0001.jpg", truncated(pillow("JPEG"), 0.6), SIZE, "is truncated: the JPEG has no end"),
        ("f_0001.tif", truncated(pillow("TIFF"), 0.6), SIZE, "is truncated: the TIFF's image"),
        ("f_0001.exr", truncated(exr(), 0.7), SIZE, "is truncated: its last chunk needs"),
        ("f_0001.exr", truncated(exr_multipart, 0.7), SIZE, "(f_0001.exr) is truncated: "),
        ("f_0001.exr", truncated(exr(), 30), SIZE, "(f_0001.exr) does not decode as EXR"),
        (
            "f_0001.exr",
            truncated(exr(compression=OpenEXR.NO_COMPRESSION), 500),  # in its offset table
            SIZE,
            "is truncated: its headers or chunk offset table are cut off.",
        ),
        ("f_0001.png", truncated(pillow("PNG"), 20), SIZE, "does not decode as PNG"),
        ("f_0001.png", png_garbage, SIZE, "(f_0001.png) does not decode as PNG"),
        # The wrong size.
        (
            "f_0001.png",
            pillow("PNG"),
            FrameExpectation(size=(W * 2, H * 2)),
            f"Frame 1 (f_0001.png) is {W}x{H} pixels, but the job renders {W * 2}x{H * 2}.",
        ),
        (
            "f_0001.exr",
            exr(),
            FrameExpectation(size=(W, H + 1)),
            f"is {W}x{H} pixels, but the job renders {W}x{H + 1}.",
        ),
        # The wrong kind: content against its name, and name against the job's format.
        (
            "f_0001.png",
            pillow("JPEG"),
            SIZE,
            "Frame 1 (f_0001.png) holds JPEG data, not the PNG its name says.",
        ),
        ("f_0001.exr", pillow("PNG"), SIZE, "holds PNG data, not the EXR its name says."),
        (
            "f_0001.png",
            pillow("PNG"),
            FrameExpectation(file_format="OPEN_EXR"),
            "Frame 1 (f_0001.png) is not OPEN_EXR, the job's output format.",
        ),
        ("f_0001.jpg", pillow("JPEG"), FrameExpectation(file_format="PNG"), "is not PNG"),
        # Blank: every pixel alike, only when the job asks.
        ("f_0001.png", pillow("PNG", BLACK), SIZE, None),
        (
            "f_0001.png",
            pillow("PNG", BLACK),
            BLANK,
            "Frame 1 (f_0001.png) is blank: every pixel has the same value.",
        ),
        ("f_0001.tif", pillow("TIFF", BLACK + 200), BLANK, "is blank"),
        ("f_0001.png", pillow("PNG", DITHERED), BLANK, "is blank"),
        ("f_0001.png", pillow("PNG", DARK), BLANK, None),
        ("f_0001.exr", exr((0.0, 0.0, 0.0)), BLANK, "(f_0001.exr) is blank"),
        ("f_0001.exr", exr((0.3, 0.2, 0.1)), BLANK, "is blank"),
        ("f_0001.png", pillow("PNG"), BLANK, None),
        ("f_0001.exr", exr(), BLANK, None),
        ("f_0001.exr", exr_multipart, BLANK, None),
    ],
)
def test_check_frame(
    tmp_path: Path,
    name: str,
    write: Callable[[Path], None],
    expect: FrameExpectation,
    problem: str | None,
) -> None:
    path = tmp_path / name
    write(path)
    if problem is None:
        check_frame(path, name, 1, expect)
        return
    with pytest.raises(BadFrame) as caught:
        check_frame(path, name, 1, expect)
    assert problem in caught.value.message
    assert caught.value.message.startswith(f"Frame 1 ({name}) ")
    assert caught.value.status_code == 422


def test_a_blank_exr_is_judged_by_its_beauty_not_its_other_passes(tmp_path: Path) -> None:
    """A multilayer EXR whose depth pass varies but whose Combined pass is black is blank."""
    depth = np.random.default_rng(1).random((H, W)).astype(np.float32)
    channels = {"ViewLayer.Depth.Z": depth, "ViewLayer.Combined": rgba(H, W, (0, 0, 0))}
    path = write_exr(tmp_path / "f_0002.exr", channels)
    with pytest.raises(BadFrame, match="is blank"):
        check_frame(path, path.name, 2, BLANK)
    check_frame(path, path.name, 2, SIZE)


@pytest.mark.parametrize("changed_row", [None, 0, H // 2, H - 1])
def test_the_blank_check_reads_strips_and_sees_a_pixel_in_any_of_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, changed_row: int | None
) -> None:
    """Strips of two rows: one pixel that differs, in the first, a middle or the last strip,
    makes the frame not blank; without it the frame is blank."""
    monkeypatch.setattr(exr_strips, "STRIP_BYTES", 2 * W * 4 * 2)
    pixels = rgba(H, W, (0.2, 0.2, 0.2))
    if changed_row is not None:
        pixels[changed_row, W - 1, 1] = 0.25
    path = tmp_path / "f_0003.exr"
    OpenEXR.File(dict(HEADER, compression=OpenEXR.NO_COMPRESSION), {"RGBA": pixels}).write(
        str(path)
    )
    assert len(list(exr_strips.beauty_strips(path))) == H // 2
    if changed_row is None:
        with pytest.raises(BadFrame, match="is blank"):
            check_frame(path, path.name, 3, BLANK)
    else:
        check_frame(path, path.name, 3, BLANK)
