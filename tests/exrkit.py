"""EXR files for tests, written with the OpenEXR library (the format's authors' own)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import OpenEXR

from flamenco.worker.blender import BlenderInstall, child_env

SCENES = Path(__file__).parent / "scenes"

HEADER = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage}


def write_exr(path: Path, channels: dict[str, np.ndarray]) -> Path:
    """An EXR file with these channels (an (h, w, 3|4) array is one RGB(A) layer)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    OpenEXR.File(dict(HEADER), channels).write(str(path))  # it fills in the dict it gets
    return path


def rgba(height: int, width: int, colour: tuple[float, float, float]) -> np.ndarray:
    """A solid, opaque linear colour."""
    pixels = np.ones((height, width, 4), np.float16)
    pixels[..., :3] = colour
    return pixels


def exr_channels(path: Path) -> dict[str, tuple[tuple[int, ...], str]]:
    """Every channel (grouped into layers as OpenEXR groups them) of every part: its pixels'
    shape (height, width[, channels]) and type."""
    exr = OpenEXR.File(str(path))
    return {
        name: (c.pixels.shape, c.pixels.dtype.name)
        for part in exr.parts
        for name, c in part.channels.items()
    }


def exr_scene(install: BlenderInstall, source: Path, out: Path) -> Path:
    """`source` with a studio's 16-bit multilayer EXR output and Depth and Normal passes,
    saved as `out` by Blender itself (tests/scenes/exr_output.py)."""
    argv = install.script_argv(SCENES / "exr_output.py", [str(source), str(out)])
    done = subprocess.run(
        argv,
        env=child_env(out.parent / "user"),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0 and out.is_file(), done.stdout[-3000:] + done.stderr[-3000:]
    return out
