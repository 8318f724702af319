"""EXR files for tests, written with the OpenEXR library (the format's authors' own)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import OpenEXR

HEADER = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage}


def write_exr(path: Path, channels: dict[str, np.ndarray]) -> Path:
    """An EXR file with these channels (an (h, w, 3|4) array is one RGB(A) layer)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    OpenEXR.File(HEADER, channels).write(str(path))
    return path


def rgba(height: int, width: int, colour: tuple[float, float, float]) -> np.ndarray:
    """A solid, opaque linear colour."""
    pixels = np.ones((height, width, 4), np.float16)
    pixels[..., :3] = colour
    return pixels


def exr_channels(path: Path) -> dict[str, tuple[int, ...]]:
    """Every channel (grouped into layers as OpenEXR groups them) of every part: its shape."""
    exr = OpenEXR.File(str(path))
    return {name: c.pixels.shape for part in exr.parts for name, c in part.channels.items()}
