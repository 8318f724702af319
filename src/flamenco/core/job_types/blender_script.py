"""The `blender-script` job type: one task that runs a Python script inside the job's .blend
on a Worker's warm Blender; the files the script lists come back as the job's artifacts (a
baked cache, say), which the jobs that wait for it (`--after`) find in their own folder."""

from pathlib import PurePosixPath
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from flamenco.core.compiler import (
    LOCAL_FILE,
    SCENE_FILE,
    BlenderVersion,
    TaskSpec,
    WorkerTag,
    job_path,
    whole_number,
)
from flamenco.core.frames import MAX_FRAME_NUMBER
from flamenco.core.matching import Requirements

SCRIPT_TASK_TYPE = "blender-script"


class BlenderScriptSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    blend: job_path(".blend") = Field(  # type: ignore[valid-type]
        description="The .blend file the script runs in.", json_schema_extra=SCENE_FILE
    )
    script: job_path(".py") = Field(  # type: ignore[valid-type]
        description="The Python script to run: a file on the submitting machine, sent with "
        "the job. It sees FLAMENCO_ARGS and appends the files to send back to "
        "FLAMENCO_OUTPUTS.",
        json_schema_extra=LOCAL_FILE,
    )
    args: list[str] = Field(default_factory=list, description="The script's FLAMENCO_ARGS.")
    frame: whole_number(0, MAX_FRAME_NUMBER) | None = Field(  # type: ignore[valid-type]
        None, description="The scene's current frame while the script runs [the file's own]."
    )
    worker_tag: WorkerTag = Field(None, description="Only Workers with this tag.")
    min_blender_version: BlenderVersion = Field(None, description="Minimum Blender version.")


class BlenderScript:
    name = "blender-script"
    label = "Run a script"
    description = (
        "Run a Python script inside the .blend on a Worker's Blender and keep the files it "
        "lists (e.g. a baked simulation cache) as the job's files."
    )
    Settings = BlenderScriptSettings

    def compile(self, settings: BlenderScriptSettings) -> list[TaskSpec]:
        command: dict[str, Any] = {
            "blend": settings.blend,
            "script": settings.script,
            "args": list(settings.args),
            "frame": settings.frame,
        }
        return [
            TaskSpec(
                name=f"script {PurePosixPath(settings.script.replace(chr(92), '/')).name}",
                type=SCRIPT_TASK_TYPE,
                frames=(),
                command=command,
                requirements=Requirements(settings.worker_tag, settings.min_blender_version),
                renders_frames=False,
            )
        ]


JOB_TYPE = BlenderScript()
