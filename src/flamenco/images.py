"""Rendered frames as pictures people look at: thumbnails, the Dashboard's viewer, the preview
video. Pillow reads what it can; OpenEXR (the file library of the format's authors) reads EXR,
whose beauty (the Combined / RGBA layer) becomes an 8-bit sRGB image: clipped to 0..1, then
the sRGB transfer function. No colour management beyond that: a look at the frame, not a
grade. The frames themselves are never changed; these are copies for viewing.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import OpenEXR
from PIL import Image

EXR_MAGIC = b"\x76\x2f\x31\x01"
# Where the beauty lives: a plain EXR's RGB(A); a multilayer EXR's composite, else the first
# view layer's Combined pass (Blender names it "<view layer>.Combined").
_BEAUTY_NAMES = ("RGBA", "RGB", "Composite.Combined")
_BEAUTY_SUFFIX = ".Combined"


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


def open_image(path: Path) -> Image.Image:
    """The frame as a Pillow image: EXR as its 8-bit sRGB beauty, anything else as Pillow
    opens it (lazily; close it, or use it in a with block)."""
    if is_exr(path):
        return exr_beauty(path)
    return Image.open(path)


def save_jpeg(source: Path, dest: Path, quality: int, max_side: int | None = None) -> None:
    """A JPEG of the picture in `source` (at most `max_side` pixels a side when given) at
    `dest`, written whole or not at all; raises whatever reading or writing raised."""
    tmp = dest.with_name(dest.name + ".partial")
    try:
        with open_image(source) as img:
            if max_side:
                img.draft("RGB", (max_side, max_side))  # JPEG: decode smaller
                img.thumbnail((max_side, max_side))
            picture = img.convert("RGB")
        dest.parent.mkdir(parents=True, exist_ok=True)
        picture.save(tmp, "JPEG", quality=quality)
        tmp.replace(dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def exr_beauty(path: Path) -> Image.Image:
    """The beauty layer of an EXR file as an 8-bit sRGB RGB image; a file with no colour
    layer shows its first channel in grey."""
    pixels = beauty_pixels(OpenEXR.File(str(path)))
    if pixels.ndim == 2:
        pixels = np.repeat(pixels[:, :, None], 3, axis=2)
    rgb = pixels[:, :, :3].astype(np.float32)
    return Image.fromarray(linear_to_srgb8(rgb), "RGB")


def linear_to_srgb8(linear: np.ndarray) -> np.ndarray:
    """Scene-linear values → 8-bit sRGB: clip to 0..1 (NaN as 0), then the sRGB curve."""
    c = np.clip(np.nan_to_num(linear, nan=0.0, posinf=1.0, neginf=0.0), 0.0, 1.0)
    srgb = np.where(c <= 0.0031308, c * 12.92, 1.055 * np.power(c, 1 / 2.4) - 0.055)
    return np.round(srgb * 255.0).astype(np.uint8)


def beauty_pixels(exr: OpenEXR.File) -> np.ndarray:
    """The beauty layer's pixels as stored: (height, width, channels), or (height, width)."""
    channels: dict[str, np.ndarray] = {}
    for part in exr.parts:  # Blender 5 writes one part per pass; older ones one part in all
        for name, channel in part.channels.items():
            channels.setdefault(name, channel.pixels)
    if not channels:
        raise ValueError("the EXR file has no channels")
    for name in _BEAUTY_NAMES:
        if name in channels:
            return channels[name]
    for name, pixels in channels.items():
        if name.endswith(_BEAUTY_SUFFIX) and pixels.ndim == 3:
            return pixels
    colour = [p for p in channels.values() if p.ndim == 3 and p.shape[2] >= 3]
    return colour[0] if colour else next(iter(channels.values()))
