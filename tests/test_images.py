"""flamenco.images: EXR frames as 8-bit sRGB pictures, written here with the OpenEXR library."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from exrkit import rgba, write_exr
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
