"""A distribution installed for one test: a module and its dist-info (entry points) in a
folder put first on sys.path, as pip would leave them, so importlib.metadata finds its entry
points for real. Removed again afterwards, module included."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def installed_distribution(
    folder: Path, module: str, source: str, entry_points: str
) -> Iterator[Path]:
    """Install `module` (its `source`) as the distribution of the same name, version 1.0,
    declaring `entry_points` (entry_points.txt text), into `folder` for the block."""
    (folder / f"{module}.py").write_text(source)
    info = folder / f"{module}-1.0.dist-info"
    info.mkdir()
    name = module.replace("_", "-")
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(entry_points)
    sys.path.insert(0, str(folder))
    try:
        yield folder
    finally:
        sys.path.remove(str(folder))
        sys.modules.pop(module, None)
