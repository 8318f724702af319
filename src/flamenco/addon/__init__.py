"""Flamenco's Blender add-on and the builder that turns it into an installable zip.

``render_flamenco/`` is the add-on's source: a Blender 4.2+ extension that uses only Python's
standard library plus blender-asset-tracer, which the builder copies into the zip.
"""
