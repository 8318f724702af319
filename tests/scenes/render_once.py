"""Run inside Blender: render one frame of a file the way a workstation would, to compare with.

Arguments after the script (or after `--`): BLEND FRAME OUT [--no-scripts]. Opens BLEND with
its scripts trusted (auto-run, as on a workstation that trusts the file) unless --no-scripts,
renders FRAME with the file's own settings and writes it to OUT (extension included).
"""

import sys

import bpy


def main():
    args = sys.argv[sys.argv.index("--") + 1 :] if "--" in sys.argv else sys.argv[1:]
    blend, frame, out = args[0], int(args[1]), args[2]
    bpy.ops.wm.open_mainfile(filepath=blend, use_scripts="--no-scripts" not in args[3:])
    scene = bpy.context.scene
    scene.frame_set(frame)
    scene.render.use_file_extension = False
    scene.render.filepath = out
    bpy.ops.render.render(write_still=True)


main()
