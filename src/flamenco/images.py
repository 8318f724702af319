"""Rendered frames as pictures people look at: thumbnails, the Dashboard's viewer, the preview
video. Pillow reads what it can; OpenEXR (the file library of the format's authors) reads EXR,
whose beauty (the Combined / RGBA layer) becomes an 8-bit sRGB image: clipped to 0..1, then
the sRGB transfer function. No colour management beyond that: a look at the frame, not a
grade. The frames themselves are never changed; these are copies for viewing.

An EXR is read a strip of scan lines at a time (`exr_strips.py`) and each strip is made 8-bit
before the next is read, so a 200 MB frame never lies in memory in float; a thumbnail is
shrunk strip by strip as it is read.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import OpenEXR
from PIL import Image

from flamenco.core.exr_layout import MAGIC as EXR_MAGIC
from flamenco.exr_strips import beauty_strips

# Pillow's thumbnail() shrinks by whole factors (a box filter) while the picture is at least
# this many times the final size, then resamples; an EXR's thumbnail does the same per strip.
REDUCING_GAP = 2.0


def is_exr(path: Path) -> bool:
    """Whether the file is OpenEXR, by its magic number (blobs have no extension)."""
    with open(path, "rb") as f:
        return f.read(4) == EXR_MAGIC


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) of an image file, read from its header only."""
    if is_exr(path):
        low, high = OpenEXR.File(str(path), header_only=True).header()["dataWindow"]
        return int(high[0] - low[0] + 1), int(high[1] - low[1] + 1)
    with Image.open(path) as img:
        return img.size


def open_image(path: Path, max_side: int | None = None) -> Image.Image:
    """The frame as a Pillow image: EXR as its 8-bit sRGB beauty (at most `max_side` pixels a
    side when given), anything else as Pillow opens it (lazily, whole; close it, or use it in
    a with block)."""
    if is_exr(path):
        return exr_beauty(path, max_side)
    return Image.open(path)


def save_jpeg(source: Path, dest: Path, quality: int, max_side: int | None = None) -> None:
    """A JPEG of the picture in `source` (at most `max_side` pixels a side when given) at
    `dest`, written whole or not at all; raises whatever reading or writing raised."""
    tmp = dest.with_name(dest.name + ".partial")
    try:
        with open_image(source, max_side) as img:
            if max_side:
                img.draft("RGB", (max_side, max_side))  # JPEG: decode smaller
                img.thumbnail((max_side, max_side))
            # No copy of an image that is RGB already: a full-size frame's is tens of MB.
            picture = img if img.mode == "RGB" else img.convert("RGB")
            dest.parent.mkdir(parents=True, exist_ok=True)
            picture.save(tmp, "JPEG", quality=quality)
        tmp.replace(dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def exr_beauty(path: Path, max_side: int | None = None) -> Image.Image:
    """The beauty layer of an EXR file as an 8-bit sRGB RGB image, at most `max_side` pixels a
    side when given (the pixels Pillow's thumbnail() makes of the full-size image); a file with
    no colour layer shows its first channel in grey."""
    width, height = image_size(path)
    final = thumbnail_size(width, height, max_side) if max_side else None
    factor_x = factor_y = 1
    if final:
        factor_x = int(width / final[0] / REDUCING_GAP) or 1
        factor_y = int(height / final[1] / REDUCING_GAP) or 1
    picture = Image.new("RGB", (math.ceil(width / factor_x), math.ceil(height / factor_y)))
    top = 0
    for strip in beauty_strips(path, multiple_of=factor_y):
        colour = strip[:, :, :3] if strip.ndim == 3 else strip[:, :, None]
        srgb = linear_to_srgb8(colour.astype(np.float32))
        if srgb.shape[2] == 1:  # one channel: grey
            srgb = np.repeat(srgb, 3, axis=2)
        piece = Image.fromarray(srgb, "RGB")
        if factor_x > 1 or factor_y > 1:
            piece = piece.reduce((factor_x, factor_y))
        picture.paste(piece, (0, top))
        top += piece.height
    if final is None:
        return picture
    box = (0.0, 0.0, width / factor_x, height / factor_y)
    return picture.resize(final, Image.Resampling.BICUBIC, box=box)


def thumbnail_size(width: int, height: int, max_side: int) -> tuple[int, int] | None:
    """The size Pillow's thumbnail() gives a width x height picture in a max_side square; None
    when it fits already."""
    if width <= max_side and height <= max_side:
        return None
    aspect = width / height

    def nearest(value: float, error: Callable[[int], float]) -> int:
        return max(min(math.floor(value), math.ceil(value), key=error), 1)

    if aspect <= 1:  # as tall as wide or taller: the height fills the square
        return nearest(max_side * aspect, lambda n: abs(aspect - n / max_side)), max_side
    return max_side, nearest(max_side / aspect, lambda n: abs(aspect - max_side / n) if n else 0)


def linear_to_srgb8(linear: np.ndarray) -> np.ndarray:
    """Scene-linear values → 8-bit sRGB: clip to 0..1 (NaN as 0), then the sRGB curve."""
    c = np.clip(np.nan_to_num(linear, nan=0.0, posinf=1.0, neginf=0.0), 0.0, 1.0)
    srgb = np.where(c <= 0.0031308, c * 12.92, 1.055 * np.power(c, 1 / 2.4) - 0.055)
    return np.round(srgb * 255.0).astype(np.uint8)
