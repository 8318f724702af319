"""The add-on's preferences: where the Server is and who the artist is."""

from __future__ import annotations

import bpy

from . import state

ADDON_ID = __package__ or "render_flamenco"


class FlamencoPreferences(bpy.types.AddonPreferences):
    bl_idname = ADDON_ID

    server_url: bpy.props.StringProperty(
        name="Server URL",
        description="Address of the Flamenco Server, e.g. http://farm.example:9999",
        default="http://localhost:9999",
    )
    api_token: bpy.props.StringProperty(
        name="API token",
        description="Your token for the Flamenco Server (from `flamenco up` or an admin)",
        subtype="PASSWORD",
    )
    ca_bundle: bpy.props.StringProperty(
        name="CA bundle",
        description="PEM file of the CA certificates to trust for an https:// Server "
        "(empty: the system's trust store)",
        subtype="FILE_PATH",
    )

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        layout.prop(self, "server_url")
        layout.prop(self, "api_token")
        layout.prop(self, "ca_bundle")
        row = layout.row()
        row.operator("flamenco.check_connection", icon="URL")
        if state.connection:
            box = layout.box()
            for part in state.connection.split("; "):
                box.label(text=part)


def preferences(context: bpy.types.Context | None = None) -> FlamencoPreferences:
    ctx = context or bpy.context
    return ctx.preferences.addons[ADDON_ID].preferences


CLASSES: tuple[type, ...] = (FlamencoPreferences,)
