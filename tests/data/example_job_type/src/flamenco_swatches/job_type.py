"""The `swatches` job type: for every frame, a PNG of one colour whose shade steps with the
frame number; tasks of `chunk` frames each, run by the `swatch` command."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from flamenco.core.compiler import FrameRange, TaskSpec
from flamenco.core.frames import chunk_frames, format_frame_range, parse_frame_range

COMMAND = "swatch"


class SwatchSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    frames: FrameRange = Field(description="Frames, e.g. 1-10.")
    chunk: int = Field(2, ge=1, le=100, description="Frames per task.")
    size: int = Field(16, ge=1, le=1024, description="Width and height in pixels.")
    colour: Annotated[str, Field(pattern=r"^#[0-9a-fA-F]{6}$")] = Field(
        "#3366cc", description="The first frame's colour; later frames get darker."
    )


class Swatches:
    name = "swatches"
    label = "Colour swatches"
    description = "A PNG of one colour per frame, and a text file listing each task's frames."
    Settings = SwatchSettings

    def compile(self, settings: SwatchSettings) -> list[TaskSpec]:
        frames = parse_frame_range(settings.frames)
        command = {"size": settings.size, "colour": settings.colour}
        return [
            TaskSpec(
                name=f"swatches {format_frame_range(chunk)}",
                type=COMMAND,
                frames=tuple(chunk),
                command=command,
            )
            for chunk in chunk_frames(frames, settings.chunk)
        ]


JOB_TYPE = Swatches()
