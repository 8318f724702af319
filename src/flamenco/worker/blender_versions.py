"""The version each Blender install said it was, remembered between starts of a Worker.

Asking means starting that Blender (0.5 to 1 s each, the bpy module's import included) at every
Worker start. An install is remembered by what it is on disk: the real path, size, mtime_ns
and inode of the Blender executable, or of the bpy module's binary; one that changed in any of
these is asked again. The memory is a small JSON file in the user's cache folder; it is only
a shortcut, never trusted: one that cannot be read or written is started afresh or left
alone, and entries of installs no longer on disk go at the next write. `flamenco doctor` asks
every install anew (`find_blenders(remembered=False)`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
from pathlib import Path

from flamenco.addon.render_flamenco.hash_cache import user_cache_dir

log = logging.getLogger(__name__)

FILE_NAME = "blender-versions.json"
FORMAT = 1  # the file's "format"; a file of any other is started afresh


def install_key(path: str | Path) -> str | None:
    """`path` as it is on disk (real path, size, mtime_ns, inode); None if it cannot be read."""
    try:
        real = os.path.realpath(path)
        st = os.stat(real)
    except OSError:
        return None
    return f"{real}|{st.st_size}|{st.st_mtime_ns}|{st.st_ino}"


def _path_of(key: str) -> str:
    return key.rsplit("|", 3)[0]


class VersionMemory:
    """Install key -> the version that install said it was. One that is not `enabled`
    (FORGETFUL) recalls nothing and remembers nothing: every install is asked."""

    def __init__(self, path: Path | None = None, enabled: bool = True) -> None:
        self.path = (path or user_cache_dir() / FILE_NAME) if enabled else None
        self._known: dict[str, object] | None = None  # the file's, read at the first recall

    @property
    def enabled(self) -> bool:
        return self.path is not None

    def recall(self, key: str | None) -> str | None:
        if key is None or not self.enabled:
            return None
        if self._known is None:
            self._known = self._read()
        found = self._known.get(key)
        return found if isinstance(found, str) else None

    def remember(self, key: str | None, version: str) -> None:
        if key is None or self.path is None:
            return
        # Read again: another Worker may have written since; entries of installs gone go.
        kept = {k: v for k, v in self._read().items() if install_key(_path_of(k)) == k}
        kept[key] = version
        self._known = kept
        tmp = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            # Whole or not at all: Workers starting at once each write a complete file.
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".blender-versions-")
            with os.fdopen(fd, "w") as f:
                json.dump({"format": FORMAT, "versions": kept}, f)
            os.replace(tmp, self.path)
        except OSError as exc:
            log.debug("could not remember Blender versions in %s: %s", self.path, exc)
            if tmp is not None:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)

    def _read(self) -> dict[str, object]:
        if self.path is None:
            return {}
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            return {}
        versions = data.get("versions")
        return versions if isinstance(versions, dict) else {}


FORGETFUL = VersionMemory(enabled=False)
