"""Run as Blender's script in a stand-in `blender` (tests/e2e/test_frame_checks.py): the real
Flamenco child, with a handler that cuts every frame Blender writes to half its size, as a
failing disk or a killed write would. Arguments: the child's script, then its own arguments.
"""

import os
import runpy
import sys

import bpy


@bpy.app.handlers.persistent
def cut_frame(scene, *_args):
    path = bpy.path.abspath(scene.render.filepath) + scene.render.file_extension
    if os.path.isfile(path):
        with open(path, "r+b") as f:
            f.truncate(os.path.getsize(path) // 2)
        print(f"corrupt_frames: cut {path}", flush=True)


bpy.app.handlers.render_write.append(cut_frame)
child = sys.argv[1]
sys.argv = sys.argv[1:]
runpy.run_path(child, run_name="__main__")
