"""Flamenco: a network renderer for Blender."""

__version__ = "0.1.0"
