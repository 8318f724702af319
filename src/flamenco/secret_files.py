"""Files that hold secrets (farm.toml, a Manager's join-secret): 0600 from their first byte,
and replaced in one step, so that no reader ever sees a half-written or readable one."""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def write_secret_file(path: Path, text: str) -> Path:
    """Write `text` to `path` as a new file only this user can read, whatever the umask."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return path
