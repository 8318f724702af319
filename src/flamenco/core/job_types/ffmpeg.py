"""The `ffmpeg` job type: a video of the frames of the jobs it waits for (`submit --after`),
in frame order, as one H.264 MP4 (`preview.mp4`, an artifact of the job). The Server lists
those frames as the task's files, as it does for a render job's own preview video."""

from pydantic import BaseModel, ConfigDict, Field

from flamenco.core.compiler import FrameRange, TaskSpec, WorkerTag, whole_number
from flamenco.core.frames import parse_frame_range
from flamenco.core.job_types.blender_render import PREVIEW_TASK_TYPE
from flamenco.core.matching import Requirements


class FfmpegSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    frames: FrameRange | None = Field(  # type: ignore[valid-type]
        None, description="The frames to put in the video [every frame of those jobs]."
    )
    fps: whole_number(1, 240) = Field(24, description="Frames per second.")  # type: ignore[valid-type]
    worker_tag: WorkerTag = Field(None, description="Only Workers with this tag.")


class Ffmpeg:
    name = "ffmpeg"
    label = "Video of frames"
    description = (
        "An H.264 MP4 of the frames of the jobs it waits for (--after), in frame order; no scene."
    )
    Settings = FfmpegSettings

    def compile(self, settings: FfmpegSettings) -> list[TaskSpec]:
        """One task; its frames are those to fetch, none for every frame."""
        frames = tuple(parse_frame_range(settings.frames)) if settings.frames else ()
        return [
            TaskSpec(
                name="video",
                type=PREVIEW_TASK_TYPE,
                frames=frames,
                command={"frames": list(frames), "fps": settings.fps},
                requirements=Requirements(tag=settings.worker_tag),
                renders_frames=False,
            )
        ]


JOB_TYPE = Ffmpeg()
