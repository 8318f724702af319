"""Builds Flamenco's animated demo scene. Runs INSIDE Blender (standard library + bpy only).

Usage: ``blender -b --factory-startup --python build_scene.py -- ARGS`` or, with the bpy
wheel, ``python build_scene.py ARGS`` where ARGS are
``--out PATH --frames N --resolution W H --samples S [--heavy]``.

Building the scene with a script (instead of shipping a .blend) means every worker gets a
file its own Blender can read: .blend files only open in the same or a newer Blender.
Only data-API calls are used (no viewport operators) so the script works from 3.4 to 5.x.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Sequence

import bpy

# isort: split
# With the bpy wheel these modules only exist once bpy has been imported.
import bmesh
from mathutils import Vector

# --heavy is meant to take about 1 s per frame on a 2-core CPU (measured on the dev VM).
HEAVY_RESOLUTION = (480, 270)
HEAVY_SAMPLES = 15

Colour = tuple[float, float, float]


def parse_args(argv: list[str]) -> argparse.Namespace:
    args = argv[argv.index("--") + 1 :] if "--" in argv else argv[1:]
    parser = argparse.ArgumentParser(prog="build_scene")
    parser.add_argument("--out", required=True)
    parser.add_argument("--frames", type=int, default=10)
    parser.add_argument("--resolution", type=int, nargs=2, default=(320, 180))
    parser.add_argument("--samples", type=int, default=16)
    parser.add_argument("--heavy", action="store_true")
    ns = parser.parse_args(args)
    if ns.frames < 1:
        parser.error("--frames must be at least 1")
    return ns


def reset_file() -> bpy.types.Scene:
    bpy.ops.wm.read_factory_settings(use_empty=True)
    # Linear keys make every frame step equally, so consecutive frames always differ.
    bpy.context.preferences.edit.keyframe_new_interpolation_type = "LINEAR"
    return bpy.context.scene


def material(name: str, colour: Colour, roughness: float) -> bpy.types.Material:
    mat = bpy.data.materials.new(name)
    if mat.node_tree is None:  # Blender < 5 creates materials without nodes.
        mat.use_nodes = True
    bsdf = mat.node_tree.nodes.get("Principled BSDF")
    bsdf.inputs["Base Color"].default_value = (*colour, 1.0)
    bsdf.inputs["Roughness"].default_value = roughness
    return mat


def add_object(
    scene: bpy.types.Scene, name: str, mesh: bpy.types.Mesh, mat: bpy.types.Material
) -> bpy.types.Object:
    mesh.materials.append(mat)
    obj = bpy.data.objects.new(name, mesh)
    scene.collection.objects.link(obj)
    return obj


def mesh_from_bmesh(
    name: str, build: str, smooth: bool = False, **kwargs: object
) -> bpy.types.Mesh:
    bm = bmesh.new()
    getattr(bmesh.ops, build)(bm, **kwargs)
    mesh = bpy.data.meshes.new(name)
    bm.to_mesh(mesh)
    bm.free()
    for poly in mesh.polygons:
        poly.use_smooth = smooth
    return mesh


def build_ground(scene: bpy.types.Scene) -> None:
    mesh = mesh_from_bmesh("Ground", "create_grid", x_segments=1, y_segments=1, size=40.0)
    add_object(scene, "Ground", mesh, material("Ground", (0.42, 0.44, 0.47), 0.8))


def build_cube(scene: bpy.types.Scene, frames: int) -> None:
    mesh = mesh_from_bmesh("Cube", "create_cube", size=1.4)
    cube = add_object(scene, "Cube", mesh, material("Cube", (0.9, 0.18, 0.02), 0.35))
    # Travels left to right while tumbling; a non-multiple of 90 degrees avoids
    # symmetric poses that would look identical.
    key(cube, 1, location=(-2.6, 0.0, 0.7), rotation_euler=(0.0, 0.0, 0.0))
    end = (2.6, 0.0, 1.1), (math.radians(35), math.radians(20), math.radians(250))
    key(cube, max(frames, 2), location=end[0], rotation_euler=end[1])


def build_sphere(scene: bpy.types.Scene, frames: int, segments: int) -> None:
    mesh = mesh_from_bmesh(
        "Sphere", "create_uvsphere", smooth=True, u_segments=segments,
        v_segments=segments // 2, radius=0.8,
    )  # fmt: skip
    sphere = add_object(scene, "Sphere", mesh, material("Sphere", (0.03, 0.18, 0.75), 0.15))
    last = max(frames, 2)
    for frame in range(1, last + 1):
        t = (frame - 1) / (last - 1)
        # Bounces up and down while drifting from back-right to front-left.
        height = 0.8 + 1.6 * abs(math.sin(t * math.pi * 2.0))
        key(sphere, frame, location=(1.8 - 3.0 * t, 1.6 - 1.2 * t, height))


def key(obj: bpy.types.Object, frame: int, **values: Sequence[float]) -> None:
    for prop, value in values.items():
        setattr(obj, prop, value)
        obj.keyframe_insert(data_path=prop, frame=frame)


def build_camera(scene: bpy.types.Scene) -> None:
    cam = bpy.data.objects.new("Camera", bpy.data.cameras.new("Camera"))
    scene.collection.objects.link(cam)
    cam.data.lens = 32
    cam.location = (0.0, -10.0, 4.0)
    direction = Vector((0.0, 0.6, 1.0)) - cam.location
    cam.rotation_euler = direction.to_track_quat("-Z", "Y").to_euler()
    scene.camera = cam


def build_light(scene: bpy.types.Scene) -> None:
    sun = bpy.data.lights.new("Sun", type="SUN")
    sun.energy = 3.5
    sun.angle = math.radians(8)  # soft shadows read better at low resolutions
    obj = bpy.data.objects.new("Sun", sun)
    obj.rotation_euler = (math.radians(50), math.radians(10), math.radians(30))
    scene.collection.objects.link(obj)


def build_world(scene: bpy.types.Scene) -> None:
    world = bpy.data.worlds.new("Sky")
    if world.node_tree is None:  # Blender < 5 creates worlds without nodes.
        world.use_nodes = True
    background = world.node_tree.nodes.get("Background")
    background.inputs["Color"].default_value = (0.25, 0.45, 0.85, 1.0)
    background.inputs["Strength"].default_value = 0.8
    scene.world = world


def configure_render(scene: bpy.types.Scene, ns: argparse.Namespace) -> None:
    scene.frame_start, scene.frame_end = 1, ns.frames
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = ns.samples
    scene.cycles.use_denoising = False
    # Fixed sample counts keep per-frame times (and progress reports) predictable.
    scene.cycles.use_adaptive_sampling = False
    scene.render.resolution_x, scene.render.resolution_y = ns.resolution
    scene.render.resolution_percentage = 100
    image = scene.render.image_settings
    image.file_format = "PNG"
    image.color_mode = "RGBA"
    image.color_depth = "8"


def main() -> None:
    ns = parse_args(sys.argv)
    if ns.heavy:
        ns.resolution, ns.samples = HEAVY_RESOLUTION, HEAVY_SAMPLES
    scene = reset_file()
    build_ground(scene)
    build_cube(scene, ns.frames)
    build_sphere(scene, ns.frames, segments=96 if ns.heavy else 32)
    build_camera(scene)
    build_light(scene)
    build_world(scene)
    configure_render(scene, ns)
    scene.frame_set(1)
    out = os.path.abspath(ns.out)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    bpy.ops.wm.save_as_mainfile(filepath=out)
    print(f"Demo scene saved: {out}")


if __name__ == "__main__":
    main()
