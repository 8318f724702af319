"""Run inside Blender: a tiny Cycles scene whose look sums several image textures.

Arguments after the script (or after `--`): SCENE TEXTURE... Writes SCENE: an orthographic
camera over a plane whose emission adds up every TEXTURE (Add Shader nodes, which every
Blender version has), with paths saved relative to the scene, one frame of 32x16.
"""

import sys

import bpy

args = sys.argv[sys.argv.index("--") + 1 :] if "--" in sys.argv else sys.argv[1:]
scene_path, textures = args[0], args[1:]

bpy.ops.wm.read_factory_settings(use_empty=True)
scene = bpy.context.scene
scene.render.engine = "CYCLES"
scene.cycles.samples = 1
scene.cycles.use_denoising = False
scene.render.resolution_x, scene.render.resolution_y = 32, 16
scene.render.resolution_percentage = 100
scene.frame_start = scene.frame_end = 1

mat = bpy.data.materials.new("Textures")
mat.use_nodes = True
nodes, links = mat.node_tree.nodes, mat.node_tree.links
nodes.clear()
out = nodes.new("ShaderNodeOutputMaterial")
total = None
for path in textures:
    tex = nodes.new("ShaderNodeTexImage")
    tex.image = bpy.data.images.load(path)
    emit = nodes.new("ShaderNodeEmission")
    emit.inputs["Strength"].default_value = 1.0 / len(textures)
    links.new(tex.outputs["Color"], emit.inputs["Color"])
    if total is None:
        total = emit.outputs["Emission"]
    else:
        add = nodes.new("ShaderNodeAddShader")
        links.new(total, add.inputs[0])
        links.new(emit.outputs["Emission"], add.inputs[1])
        total = add.outputs["Shader"]
links.new(total, out.inputs["Surface"])

bpy.ops.mesh.primitive_plane_add(size=2.0)
plane = bpy.context.object
plane.scale = (2.0, 1.0, 1.0)
plane.data.materials.append(mat)
bpy.ops.object.camera_add(location=(0, 0, 5))
camera = bpy.context.object
camera.data.type = "ORTHO"
camera.data.ortho_scale = 4.0
scene.camera = camera

bpy.ops.wm.save_as_mainfile(filepath=scene_path)
bpy.ops.file.make_paths_relative()
bpy.ops.wm.save_as_mainfile(filepath=scene_path)
