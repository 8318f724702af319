"""Run inside Blender: a small lit scene for one render engine, optionally moved by a driver.

Arguments after the script (or after `--`): ENGINE OUT [--driver]. ENGINE is a
`scene.render.engine` value (CYCLES, BLENDER_EEVEE, BLENDER_WORKBENCH). The scene has a sun,
a grey floor and a red cube that is lit and shaded, so each engine's own shading shows in the
pixels. Resolution and samples are small: the point is the engine, not the picture.

With --driver, the cube's X location is driven by `flamenco_shift(frame)`, a function that
the text block `shift_driver.py` registers when the file is loaded with its scripts trusted
(the text block is a registered module). Without trusted scripts neither the text block nor
the Python driver runs, and the cube stays at its saved X = 0.
"""

import sys

import bpy

DRIVER_MODULE = """import bpy


def flamenco_shift(frame):
    return -1.5 + 0.5 * frame


bpy.app.driver_namespace["flamenco_shift"] = flamenco_shift
"""


def principled(name, colour):
    mat = bpy.data.materials.new(name)
    if mat.node_tree is None:  # Blender < 5 creates materials without nodes.
        mat.use_nodes = True
    bsdf = mat.node_tree.nodes.get("Principled BSDF")
    bsdf.inputs["Base Color"].default_value = (*colour, 1.0)
    bsdf.inputs["Roughness"].default_value = 0.5
    mat.diffuse_color = (*colour, 1.0)  # what Workbench shows
    return mat


def add_mesh(scene, name, verts, faces, mat, location):
    mesh = bpy.data.meshes.new(name)
    mesh.from_pydata(verts, [], faces)
    mesh.materials.append(mat)
    obj = bpy.data.objects.new(name, mesh)
    obj.location = location
    scene.collection.objects.link(obj)
    return obj


def cube_mesh(half):
    verts = [(x, y, z) for x in (-half, half) for y in (-half, half) for z in (-half, half)]
    faces = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]
    return verts, faces


def add_driver(cube):
    text = bpy.data.texts.new("shift_driver.py")
    text.write(DRIVER_MODULE)
    text.use_module = True  # run at load, when the file's scripts are trusted
    fcurve = cube.driver_add("location", 0)
    fcurve.driver.type = "SCRIPTED"
    # Not a "simple expression": Blender would evaluate that without Python, trusted or not.
    fcurve.driver.expression = "flamenco_shift(frame)"


def build(engine, out, with_driver):
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    scene.render.engine = engine
    scene.render.resolution_x, scene.render.resolution_y = 64, 48
    scene.render.resolution_percentage = 100
    scene.render.image_settings.file_format = "PNG"
    scene.view_settings.view_transform = "Standard"
    scene.frame_start, scene.frame_end = 1, 5
    if engine == "CYCLES":
        scene.cycles.samples = 8
        scene.cycles.seed = 7
        scene.cycles.use_denoising = False
    elif engine == "BLENDER_EEVEE":
        scene.eevee.taa_render_samples = 8
    world = bpy.data.worlds.new("Dim")
    world.color = (0.05, 0.05, 0.05)
    scene.world = world

    floor_verts = [(-4, -4, 0), (4, -4, 0), (4, 4, 0), (-4, 4, 0)]
    add_mesh(
        scene, "Floor", floor_verts, [(0, 1, 2, 3)], principled("Grey", (0.5, 0.5, 0.5)), (0, 0, 0)
    )
    cube = add_mesh(scene, "Cube", *cube_mesh(0.5), principled("Red", (0.8, 0.1, 0.1)), (0, 0, 0.5))
    if with_driver:
        add_driver(cube)

    sun = bpy.data.objects.new("Sun", bpy.data.lights.new("Sun", "SUN"))
    sun.data.energy = 3.0
    sun.rotation_euler = (0.6, 0.2, 0.8)
    scene.collection.objects.link(sun)
    camera = bpy.data.objects.new("Camera", bpy.data.cameras.new("Camera"))
    camera.location = (0.0, -6.0, 3.0)
    camera.rotation_euler = (1.15, 0.0, 0.0)
    scene.collection.objects.link(camera)
    scene.camera = camera
    bpy.ops.wm.save_as_mainfile(filepath=out)


def main():
    args = sys.argv[sys.argv.index("--") + 1 :] if "--" in sys.argv else sys.argv[1:]
    build(args[0], args[1], "--driver" in args[2:])


main()
