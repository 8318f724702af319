"""The `swatch` Worker command: writes each frame of its task as a PNG of one colour and
sends it as a frame of the job, then a text file listing them as a job file."""

from __future__ import annotations

import asyncio
from pathlib import Path

from PIL import Image

from flamenco.commands import CommandFailed, CommandTask, Reporter


def shade(colour: str, frame: int) -> tuple[int, int, int]:
    """The colour, 8 steps darker for every frame after frame 1."""
    red, green, blue = (int(colour[i : i + 2], 16) for i in (1, 3, 5))
    step = 8 * (frame - 1)
    return (max(red - step, 0), max(green - step, 0), max(blue - step, 0))


class Swatch:
    name = "swatch"

    async def run(self, task: CommandTask, report: Reporter) -> None:
        size = int(task.parameters["size"])
        colour = str(task.parameters["colour"])
        if not task.frames:
            raise CommandFailed("A swatch task needs at least one frame.")
        task.out_dir.mkdir(parents=True, exist_ok=True)
        for number, frame in enumerate(task.frames, 1):
            path = task.out_dir / f"swatch_{frame:04d}.png"
            await asyncio.to_thread(_write_png, path, size, shade(colour, frame))
            report.log(f"frame {frame}: {shade(colour, frame)}")
            await report.output(path, frame, size=(size, size), file_format="PNG")
            report.progress(number / len(task.frames), f"frame {frame} written")
        listing = task.out_dir / "frames.txt"
        listing.write_text("".join(f"swatch_{frame:04d}.png\n" for frame in task.frames))
        await report.output(listing, name=f"swatches/{task.frames[0]:04d}.txt")


def _write_png(path: Path, size: int, rgb: tuple[int, int, int]) -> None:
    Image.new("RGB", (size, size), rgb).save(path)


COMMAND = Swatch()
