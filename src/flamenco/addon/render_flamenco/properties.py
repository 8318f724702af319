"""The job settings and the last job's status, stored per scene (saved with the file)."""

from __future__ import annotations

import bpy

from . import state
from .job_types import FlamencoTypeSetting, job_type_changed, type_suggestions

RENDER_DEVICES = (
    ("CPU", "CPU", "Render on the Workers' processors"),
    ("GPU", "GPU (any)", "Any GPU the Worker's Blender is set up for"),
    ("CUDA", "CUDA", "NVIDIA GPUs through CUDA"),
    ("OPTIX", "OptiX", "NVIDIA RTX GPUs through OptiX"),
    ("HIP", "HIP", "AMD GPUs through HIP"),
    ("ONEAPI", "oneAPI", "Intel GPUs through oneAPI"),
    ("METAL", "Metal", "Apple GPUs through Metal"),
)
# Workers do not report their GPUs to the Server yet, so every type is offered; a task
# whose device a Worker lacks fails on that Worker with Blender's own message.

# Blender's file format names (the Server checks them: flamenco.core.compiler.OUTPUT_FORMATS).
OUTPUT_FORMATS = (
    ("SCENE", "From Scene", "The file's own output settings: format, depth, codec, passes"),
    ("OPEN_EXR_MULTILAYER", "OpenEXR MultiLayer", "Every view layer and pass in one EXR"),
    ("OPEN_EXR", "OpenEXR", "High dynamic range OpenEXR images"),
    ("PNG", "PNG", "PNG images"),
    ("JPEG", "JPEG", "JPEG images"),
    ("TIFF", "TIFF", "TIFF images"),
    ("WEBP", "WebP", "WebP images"),
)

FINAL_STATUSES = {"completed", "failed", "canceled"}


def _site_suggestions(
    _self: bpy.types.PropertyGroup, _context: bpy.types.Context, edit_text: str
) -> list[str]:
    names = [str(m.get("name", "")) for m in state.managers]
    return [n for n in names if edit_text.lower() in n.lower()]


class FlamencoJobSettings(bpy.types.PropertyGroup):
    job_type: bpy.props.StringProperty(
        name="Job Type",
        description="What the farm does with the file; Refresh lists the Server's job types",
        default="blender-render",
        search=type_suggestions,
        update=job_type_changed,
    )
    type_settings: bpy.props.CollectionProperty(type=FlamencoTypeSetting)
    job_name: bpy.props.StringProperty(
        name="Job Name", description="Name of the job; empty: the file's name"
    )
    use_scene_frames: bpy.props.BoolProperty(
        name="Scene Frame Range",
        description="Render the scene's frame range; untick to type the frames",
        default=True,
    )
    frames: bpy.props.StringProperty(
        name="Frames", description="Frames to render, e.g. 1-10,15,20-24 or 1-100x5"
    )
    chunk_size: bpy.props.IntProperty(
        name="Chunk Size",
        description="Frames per task: one Worker renders a chunk in one go",
        default=1,
        min=1,
        soft_max=100,
    )
    chunk_by_time: bpy.props.BoolProperty(
        name="Chunks by Time",
        description="Start with one frame per task, then size the queued tasks so that each "
        "takes about Task Seconds (the CLI's --chunk auto); not with tiles or a preview video",
        default=False,
    )
    task_seconds: bpy.props.FloatProperty(
        name="Task Seconds",
        description="With Chunks by Time: the seconds each task should take",
        default=60.0,
        min=0.1,
        soft_max=3600.0,
    )
    tiles: bpy.props.IntProperty(
        name="Tiles",
        description="Split a single frame into this many regions, rendered on different "
        "Workers and joined by the Server; 0 or 1: render whole frames",
        default=0,
        min=0,
        soft_max=64,
    )
    priority: bpy.props.IntProperty(
        name="Priority", description="0-100, higher renders first", default=50, min=0, max=100
    )
    target_site: bpy.props.StringProperty(
        name="Site",
        description="Render only on this Manager; empty: any site. "
        "Check the connection in the preferences to list them",
        search=_site_suggestions,
    )
    notify_url: bpy.props.StringProperty(
        name="Notify URL",
        description="An http(s) URL the Server POSTs a signed JSON document to when the job "
        "completes, fails or is canceled; empty: only the farm's own",
    )
    after_jobs: bpy.props.StringProperty(
        name="After Jobs",
        description="Ids of jobs that must complete before this one starts, separated by "
        "commas (e.g. a bake job); empty: start at once",
    )
    render_device: bpy.props.EnumProperty(
        name="Device",
        description="Where the Workers render; GPU types are offered whether or not the "
        "farm's Workers have them (they do not report their GPUs yet)",
        items=RENDER_DEVICES,
        default="CPU",
    )
    output_format: bpy.props.EnumProperty(
        name="Output Format", items=OUTPUT_FORMATS, default="SCENE"
    )
    run_scripts: bpy.props.BoolProperty(
        name="Run the File's Scripts",
        description="Let the file's Python drivers and registered text blocks run on the "
        "Workers, as on a workstation that trusts the file",
        default=True,
    )
    check_blank: bpy.props.BoolProperty(
        name="Fail Blank Frames",
        description="Fail a frame whose pixels all have the same value (e.g. a black render)",
        default=False,
    )
    allow_missing: bpy.props.BoolProperty(
        name="Allow Missing Files",
        description="Submit even when files the scene uses cannot be found",
        default=False,
    )

    # What the add-on last did from this file; shown in the panel.
    status: bpy.props.StringProperty(name="Status")
    progress: bpy.props.FloatProperty(
        name="Progress", min=0.0, max=1.0, subtype="FACTOR", precision=2
    )
    last_job_id: bpy.props.StringProperty(name="Last Job")
    last_job_name: bpy.props.StringProperty(name="Last Job Name")
    last_job_server: bpy.props.StringProperty(name="Last Job's Server")
    last_job_status: bpy.props.StringProperty(name="Last Job's Status")


def scene_frames(scene: bpy.types.Scene) -> str:
    """The scene's frame range in Flamenco's syntax, e.g. 1-250 or 1-250x2."""
    start, end, step = scene.frame_start, scene.frame_end, scene.frame_step
    text = str(start) if start == end else f"{start}-{end}"
    return f"{text}x{step}" if step > 1 and start != end else text


def register() -> None:
    bpy.types.Scene.flamenco = bpy.props.PointerProperty(type=FlamencoJobSettings)


def unregister() -> None:
    del bpy.types.Scene.flamenco


CLASSES: tuple[type, ...] = (FlamencoJobSettings,)
