"""Run inside Blender: a scene whose look depends on an image texture and a linked library.

Arguments after the script (or after `--`): TEXTURE LIBRARY SCENE. Writes LIBRARY (a cube
called LibCube with a pure blue emission material) and SCENE (an orthographic camera looking
at a plane textured with TEXTURE, LibCube linked from LIBRARY in front of the right half).
Emission shaders and the Standard view transform make pixel colours predictable.
"""

import sys

import bpy


def emission_material(name, colour=None, image=None):
    mat = bpy.data.materials.new(name)
    mat.use_nodes = True
    nodes, links = mat.node_tree.nodes, mat.node_tree.links
    nodes.clear()
    out = nodes.new("ShaderNodeOutputMaterial")
    emit = nodes.new("ShaderNodeEmission")
    links.new(emit.outputs["Emission"], out.inputs["Surface"])
    if image is not None:
        tex = nodes.new("ShaderNodeTexImage")
        tex.image = image
        tex.interpolation = "Closest"
        links.new(tex.outputs["Color"], emit.inputs["Color"])
    else:
        emit.inputs["Color"].default_value = colour
    return mat


def build_library(path):
    bpy.ops.wm.read_factory_settings(use_empty=True)
    bpy.ops.mesh.primitive_cube_add(size=0.8, location=(0.5, 0.0, 0.5))
    cube = bpy.context.object
    cube.name = "LibCube"
    cube.data.materials.append(emission_material("LibBlue", colour=(0.0, 0.0, 1.0, 1.0)))
    bpy.ops.wm.save_as_mainfile(filepath=path)


def build_scene(texture, library, path):
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    scene.render.engine = "CYCLES"
    scene.cycles.samples = 4
    scene.cycles.use_denoising = False
    scene.render.resolution_x, scene.render.resolution_y = 64, 32
    scene.render.resolution_percentage = 100
    scene.view_settings.view_transform = "Standard"
    scene.frame_start, scene.frame_end = 1, 2
    world = bpy.data.worlds.new("Black")
    world.color = (0, 0, 0)
    scene.world = world

    bpy.ops.mesh.primitive_plane_add(size=2.0)
    plane = bpy.context.object
    plane.scale = (2.0, 1.0, 1.0)
    image = bpy.data.images.load(texture)
    plane.data.materials.append(emission_material("Textured", image=image))

    bpy.ops.object.camera_add(location=(0, 0, 5))
    camera = bpy.context.object
    camera.data.type = "ORTHO"
    camera.data.ortho_scale = 4.0
    scene.camera = camera

    with bpy.data.libraries.load(library, link=True) as (_, data_to):
        data_to.objects = ["LibCube"]
    for obj in data_to.objects:
        scene.collection.objects.link(obj)
    bpy.ops.wm.save_as_mainfile(filepath=path)
    bpy.ops.file.make_paths_relative()
    bpy.ops.wm.save_as_mainfile(filepath=path)


args = sys.argv[sys.argv.index("--") + 1 :] if "--" in sys.argv else sys.argv[1:]
texture_path, library_path, scene_path = args[-3:]
build_library(library_path)
build_scene(texture_path, library_path, scene_path)
