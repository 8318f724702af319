"""The code of a commit, for benchmarks that run it side by side with the working tree."""

from __future__ import annotations

import atexit
import shutil
import subprocess
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def code_at(ref: str, prefix: str = "flamenco-before-") -> Path:
    """A private copy of src/flamenco as it was at commit `ref`, removed when this process
    ends: the folder to put first on a process's PYTHONPATH."""
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", ref, "src/flamenco"], capture_output=True, check=True
    )
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive.stdout, check=True)
    return folder / "src"
