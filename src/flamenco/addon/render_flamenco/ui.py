"""The Flamenco panel in the Render properties."""

from __future__ import annotations

from pathlib import Path

import bpy

from . import state
from .api import device_warning
from .job_types import RENDER, draw_settings


class RENDER_PT_flamenco(bpy.types.Panel):
    bl_label = "Flamenco"
    bl_space_type = "PROPERTIES"
    bl_region_type = "WINDOW"
    bl_context = "render"
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        layout.use_property_split = True
        layout.use_property_decorate = False
        settings = context.scene.flamenco

        col = layout.column()
        row = col.row(align=True)
        row.prop(settings, "job_type")
        row.operator("flamenco.refresh_job_types", text="", icon="FILE_REFRESH")
        col.prop(settings, "job_name")
        if not settings.job_name.strip():
            default = Path(bpy.data.filepath).stem if bpy.data.filepath else "the file's name"
            col.label(text=f"Default: {default}", icon="INFO")
        if settings.job_type == RENDER:
            _draw_render(col, settings)
        else:
            draw_settings(col, settings)
            col.prop(settings, "priority")
            col.prop(settings, "target_site", icon="WORLD")
        col.prop(settings, "allow_missing")
        col.prop(settings, "notify_url", icon="URL")
        col.prop(settings, "after_jobs", icon="TIME")
        _draw_submit(layout, settings)


def _draw_render(col: bpy.types.UILayout, settings: bpy.types.PropertyGroup) -> None:
    """blender-render's own settings, with the priority and the site among them."""
    col.prop(settings, "use_scene_frames")
    sub = col.column()
    sub.enabled = not settings.use_scene_frames
    sub.prop(settings, "frames")
    col.prop(settings, "chunk_by_time")
    if settings.chunk_by_time:
        col.prop(settings, "task_seconds")
    else:
        col.prop(settings, "chunk_size")
    col.prop(settings, "tiles")
    col.prop(settings, "priority")
    col.prop(settings, "target_site", icon="WORLD")
    col.prop(settings, "render_device")
    if warning := device_warning(settings.render_device, state.managers):
        col.label(text=warning, icon="ERROR")
    col.prop(settings, "output_format")
    col.prop(settings, "run_scripts")
    col.prop(settings, "check_blank")


def _draw_submit(layout: bpy.types.UILayout, settings: bpy.types.PropertyGroup) -> None:
    busy = state.active is not None
    row = layout.row()
    row.scale_y = 1.4
    row.enabled = not busy
    row.operator("flamenco.submit", icon="RENDER_ANIMATION")

    if busy or settings.status or settings.last_job_id:
        box = layout.box()
        if settings.last_job_id and not busy:
            box.label(text=f"Last job: {settings.last_job_name} ({settings.last_job_id})")
        if settings.status:
            box.label(text=settings.status)
        if busy or settings.last_job_id:
            box.prop(settings, "progress", text="Progress", slider=True)
        if settings.last_job_id:
            row = box.row()
            row.operator("flamenco.refresh_status", icon="FILE_REFRESH")
            row.operator("flamenco.open_dashboard", icon="URL")


CLASSES: tuple[type, ...] = (RENDER_PT_flamenco,)
