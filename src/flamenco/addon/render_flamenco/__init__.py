"""Flamenco: submit the open scene to a Flamenco render farm from Blender.

A Blender 4.2+ extension. Inside Blender it uses only Python's standard library and the
blender-asset-tracer copy in ``_vendor/`` (bundled when the zip is built). bpy is imported
only by register(), so the modules without Blender code can be imported anywhere.
"""

from __future__ import annotations

from types import ModuleType


def _modules() -> tuple[ModuleType, ...]:
    from . import job_types, operators, preferences, properties, ui

    return (preferences, job_types, properties, operators, ui)


def register() -> None:
    import bpy

    for module in _modules():
        for cls in module.CLASSES:
            bpy.utils.register_class(cls)
        if hasattr(module, "register"):
            module.register()


def unregister() -> None:
    import bpy

    for module in reversed(_modules()):
        if hasattr(module, "unregister"):
            module.unregister()
        for cls in reversed(module.CLASSES):
            bpy.utils.unregister_class(cls)
