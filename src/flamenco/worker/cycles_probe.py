"""Runs INSIDE Blender's Python: which GPU devices Cycles itself can render on.

Started like blender_child.py (``blender -b ... --python cycles_probe.py`` or ``python
cycles_probe.py`` with the bpy wheel), or run by a Blender on standby that was asked for the
list (``blender_child.py --list-devices``); only the standard library and bpy may be used. It
prints one line ``@@FLAMENCO@@ {"event": "devices", "devices": [...]}``, with an ``error``
when Cycles could not be asked. Asking
Cycles, not a vendor tool, is what tells whether this Blender's kernels, driver and backend
fit together: a GPU that nvidia-smi lists may still be one Cycles cannot use.
"""

from __future__ import annotations

import json
import sys

import bpy

MARKER = "@@FLAMENCO@@"
BACKENDS = ("OPTIX", "CUDA", "HIP", "ONEAPI", "METAL")


def cycles_devices() -> list[dict[str, str]]:
    prefs = bpy.context.preferences.addons["cycles"].preferences
    devices = []
    for backend in BACKENDS:
        try:
            found = prefs.get_devices_for_type(backend)
        except (TypeError, ValueError, KeyError, AttributeError):  # not built into this Blender
            continue
        # The list for a backend ends with the CPU; only the backend's own devices count.
        devices += [
            {"backend": backend, "name": d.name, "id": d.id} for d in found if d.type == backend
        ]
    return devices


def main() -> None:
    try:
        event: dict[str, object] = {"event": "devices", "devices": cycles_devices()}
    except Exception as exc:  # a broken cycles add-on: the Worker renders on the CPU only
        event = {"event": "devices", "devices": [], "error": f"{type(exc).__name__}: {exc}"}
    line = json.dumps(event)
    sys.stdout.write(f"\n{MARKER} {line}\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
