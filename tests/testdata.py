"""Where the tests' data files live inside the repository (see tests/data/README.md)."""

from __future__ import annotations

from pathlib import Path

DATA = Path(__file__).resolve().parent / "data"
# Real .blend files with every kind of dependency, from blender-asset-tracer's own test suite.
CORPUS = DATA / "blend-corpus"
