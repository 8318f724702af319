"""Run inside Blender: a file that renders black, saved as a new file.

Arguments after the script (or after `--`): IN OUT. Opens IN, removes every light and the
world (Cycles then has no light at all) and saves it as OUT: every pixel of its frames is
black and opaque, on any Worker.
"""

import sys

import bpy


def main():
    args = sys.argv[sys.argv.index("--") + 1 :] if "--" in sys.argv else sys.argv[1:]
    source, dest = args[0], args[1]
    bpy.ops.wm.open_mainfile(filepath=source)
    scene = bpy.context.scene
    for obj in [o for o in scene.objects if o.type == "LIGHT"]:
        bpy.data.objects.remove(obj)
    scene.world = None
    scene.render.film_transparent = False
    bpy.ops.wm.save_as_mainfile(filepath=dest, copy=True)


main()
