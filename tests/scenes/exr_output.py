"""Run inside Blender: give a file a studio's EXR output, saved as a new file.

Arguments after the script (or after `--`): IN OUT. Opens IN and sets its output to 16-bit
(half float) multilayer OpenEXR with the ZIP codec, with the Depth and Normal passes enabled on
every view layer besides Combined, then saves it as OUT. Nothing else changes.
"""

import sys

import bpy


def main():
    args = sys.argv[sys.argv.index("--") + 1 :] if "--" in sys.argv else sys.argv[1:]
    source, dest = args[0], args[1]
    bpy.ops.wm.open_mainfile(filepath=source)
    scene = bpy.context.scene
    settings = scene.render.image_settings
    if hasattr(settings, "media_type"):  # Blender 5 sorts formats by media type
        settings.media_type = "MULTI_LAYER_IMAGE"
    settings.file_format = "OPEN_EXR_MULTILAYER"
    settings.color_depth = "16"
    settings.exr_codec = "ZIP"
    for layer in scene.view_layers:
        layer.use_pass_z = True
        layer.use_pass_normal = True
    bpy.ops.wm.save_as_mainfile(filepath=dest, copy=True)


main()
