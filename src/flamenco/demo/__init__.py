"""The bundled demo scene, built by a script inside whatever Blender a worker has."""
