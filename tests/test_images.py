"""flamenco.images: EXR frames as 8-bit sRGB pictures, written here with the OpenEXR library."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import OpenEXR
import pytest
from PIL import Image

from exrkit import rgba, write_exr
from flamenco import exr_strips
from flamenco.images import image_size, is_exr, linear_to_srgb8, open_image


@pytest.mark.parametrize(
    ("linear", "srgb"),
    [
        (0.0, 0),
        (1.0, 255),
        (0.5, 188),  # the sRGB curve, not a plain gamma
        (0.0031308, 10),  # where the curve's linear toe ends
        (0.18, 118),  # middle grey
        (4.0, 255),  # over-bright: clipped
        (-0.5, 0),
        (float("nan"), 0),
        (float("inf"), 255),
    ],
)
def test_linear_values_become_srgb_bytes(linear: float, srgb: int) -> None:
    assert linear_to_srgb8(np.array([linear], np.float32)).tolist() == [srgb]


@pytest.mark.parametrize(
    ("channels", "pixel"),
    [
        # A multilayer EXR as Blender writes it: the view layer's Combined pass is the beauty,
        # whatever other passes come first.
        (
            {
                "ViewLayer.Depth.Z": np.full((3, 5), 7.0, np.float32),
                "ViewLayer.Normal": np.full((3, 5, 3), 0.0, np.float32),
                "ViewLayer.Combined": rgba(3, 5, (0.5, 2.0, 0.0)),
            },
            (188, 255, 0),
        ),
        # The compositor's result wins over a view layer's own render.
        (
            {
                "ViewLayer.Combined": rgba(3, 5, (1.0, 1.0, 1.0)),
                "Composite.Combined": rgba(3, 5, (0.0, 0.18, 1.0)),
            },
            (0, 118, 255),
        ),
        ({"RGBA": rgba(3, 5, (0.18, 0.0, 1.0))}, (118, 0, 255)),  # a plain EXR
        ({"Y": np.full((3, 5), 0.5, np.float32)}, (188, 188, 188)),  # one channel: grey
    ],
)
def test_the_beauty_of_an_exr_becomes_an_srgb_image(
    tmp_path: Path, channels: dict[str, np.ndarray], pixel: tuple[int, int, int]
) -> None:
    path = write_exr(tmp_path / "frame", channels)  # no extension: blobs have none
    assert is_exr(path)
    assert image_size(path) == (5, 3)
    with open_image(path) as img:
        assert (img.mode, img.size) == ("RGB", (5, 3))
        assert img.getpixel((2, 1)) == pixel


def test_other_images_are_opened_by_pillow(tmp_path: Path) -> None:
    path = tmp_path / "frame.png"
    Image.new("RGB", (7, 2), (1, 2, 3)).save(path)
    assert not is_exr(path)
    assert image_size(path) == (7, 2)
    with open_image(path) as img:
        assert (img.format, img.getpixel((0, 0))) == ("PNG", (1, 2, 3))


def old_way(path: Path, max_side: int | None) -> np.ndarray:
    """The reference: the whole beauty read in float at once, made 8-bit, then Pillow's
    thumbnail() (what images.py did before it read strips)."""
    channels = {n: c.pixels for p in OpenEXR.File(str(path)).parts for n, c in p.channels.items()}
    beauty = next(channels[n] for n in ("RGBA", "RGB", "V.Combined", "Y") if n in channels)
    if beauty.ndim == 2:
        beauty = np.repeat(beauty[:, :, None], 3, axis=2)
    img = Image.fromarray(linear_to_srgb8(beauty[:, :, :3].astype(np.float32)), "RGB")
    if max_side:
        img.thumbnail((max_side, max_side))
    return np.asarray(img)


def gradient(height: int, width: int, channels: int, dtype: type) -> np.ndarray:
    """Smooth ramps with noise and over-bright values, so that shrinking and clipping show."""
    y, x = np.mgrid[0:height, 0:width]
    ramps = [x / width, y / height, (x * y % 97) / 97, np.ones_like(x, dtype=float)]
    noise = np.random.default_rng(height * width).random((height, width, channels)) * 0.3
    pixels = np.stack(ramps[:channels], axis=2) * 1.3 + noise
    return (pixels[:, :, 0] if channels == 1 else pixels).astype(dtype)


@pytest.mark.parametrize(
    ("height", "width", "compression", "channels"),
    [
        (301, 1000, OpenEXR.ZIP_COMPRESSION, {"RGBA": gradient(301, 1000, 4, np.float16)}),
        (1001, 257, OpenEXR.PIZ_COMPRESSION, {"RGB": gradient(1001, 257, 3, np.float32)}),
        (600, 600, OpenEXR.NO_COMPRESSION, {"Y": gradient(600, 600, 1, np.float32)}),
        (90, 100, OpenEXR.ZIP_COMPRESSION, {"RGBA": gradient(90, 100, 4, np.float16)}),
        (
            520,
            777,
            OpenEXR.DWAA_COMPRESSION,
            {
                "V.Depth.Z": gradient(520, 777, 1, np.float32),
                "V.Combined": gradient(520, 777, 4, np.float16),
            },
        ),
    ],
)
@pytest.mark.parametrize("max_side", [256, None])
def test_an_exr_read_in_strips_gives_the_pixels_of_the_whole_read(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    height: int,
    width: int,
    compression: OpenEXR.Compression,
    channels: dict[str, np.ndarray],
    max_side: int | None,
) -> None:
    """Thumbnail and full-size image alike, pixel for pixel, for strips of a few rows."""
    monkeypatch.setattr(exr_strips, "STRIP_BYTES", 20_000)
    path = tmp_path / "frame"
    header = {"compression": compression, "type": OpenEXR.scanlineimage}
    OpenEXR.File(header, dict(channels)).write(str(path))
    assert len(list(exr_strips.beauty_strips(path))) > 3  # read in strips indeed

    with open_image(path, max_side) as img:
        got = np.asarray(img)

    expected = old_way(path, max_side)
    assert got.shape == expected.shape
    assert np.array_equal(got, expected)


def test_a_tiled_exr_is_read_whole_as_before(tmp_path: Path) -> None:
    tiles = OpenEXR.TileDescription()
    tiles.xSize = tiles.ySize = 32
    header = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.tiledimage, "tiles": tiles}
    path = tmp_path / "frame.exr"
    OpenEXR.File(header, {"RGBA": gradient(300, 400, 4, np.float16)}).write(str(path))
    with open_image(path, 256) as img:
        assert np.array_equal(np.asarray(img), old_way(path, 256))
