"""SHA-256 of the files a submission sends, remembered between submissions (stdlib only).

Used by `flamenco submit` and by the add-on inside Blender (this module ships in the add-on's
zip), so both skip reading a file whose path, size, mtime_ns and inode are those it had when
it was last hashed: resubmitting an unchanged project reads none of its textures.

The cache is one SQLite file in the user's cache folder (`default_path`). It is only a
shortcut, never trusted: a file that SQLite cannot read, or one written by another version of
this schema, is deleted and started afresh, and any error while using it falls back to
hashing the file.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import sqlite3
import sys
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("flamenco.hash_cache")

SCHEMA_VERSION = 1  # PRAGMA user_version; a file with any other version is rebuilt
FILE_NAME = "hashes.sqlite3"
HASH_CHUNK = 1024 * 1024
# A file changed within this long before it was hashed may change again within the same
# mtime tick without its size or mtime showing it; such a hash is used but not remembered.
RACY_S = 2.0
BUSY_TIMEOUT_S = 10.0

ReadProgress = Callable[[int], None]


def sha256_file(path: Path, progress: ReadProgress | None = None) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(HASH_CHUNK):
            digest.update(chunk)
            if progress is not None:
                progress(len(chunk))
    return digest.hexdigest()


def user_cache_dir() -> Path:
    """Flamenco's folder in the user's cache folder: XDG_CACHE_HOME (or ~/.cache),
    ~/Library/Caches on macOS, LOCALAPPDATA on Windows."""
    if sys.platform == "win32" and os.environ.get("LOCALAPPDATA"):
        base = Path(os.environ["LOCALAPPDATA"])
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches"
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "flamenco"


def default_path() -> Path:
    """hashes.sqlite3 in the user's cache folder (`user_cache_dir`)."""
    return user_cache_dir() / FILE_NAME


@dataclass
class HashStats:
    hashed: int = 0  # files read
    hashed_bytes: int = 0
    remembered: int = 0  # files whose hash came from the cache


@dataclass(frozen=True)
class _Key:
    path: str
    size: int
    mtime_ns: int
    inode: int

    @classmethod
    def of(cls, path: Path) -> _Key:
        st = path.stat()
        return cls(str(path.absolute()), st.st_size, st.st_mtime_ns, st.st_ino)


_SCHEMA = """
CREATE TABLE IF NOT EXISTS hashes (
    path TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    inode INTEGER NOT NULL,
    sha256 TEXT NOT NULL
)
"""


class HashCache:
    """Hashes of files by (path, size, mtime_ns, inode); `None` as the path: no cache at all."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.stats = HashStats()
        self._db: sqlite3.Connection | None = None
        if path is not None:
            try:
                self._db = self._open(path)
            except (OSError, sqlite3.Error) as exc:
                log.warning("hash cache %s unusable, hashing every file (%s)", path, exc)

    def __enter__(self) -> HashCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    @staticmethod
    def _open(path: Path) -> sqlite3.Connection:
        _private_file(path)
        try:
            return _connect_checked(path)
        except sqlite3.DatabaseError as exc:
            log.warning("hash cache %s rebuilt: %s", path, exc)
            for stale in (path, *(path.with_name(path.name + s) for s in ("-wal", "-journal"))):
                with contextlib.suppress(FileNotFoundError):
                    stale.unlink()
            return _connect_checked(path)

    def manifest(
        self,
        files: dict[str, Path],
        written: Collection[str] = (),
        progress: ReadProgress | None = None,
    ) -> dict[str, str]:
        """Path in the job -> SHA-256. The files of `written` were made for this submission
        (rewritten .blend files in a temporary folder): hashed, never remembered."""
        manifest = {}
        for rel, path in files.items():
            if rel in written:
                manifest[rel] = sha256_file(path, progress)
                self.stats.hashed += 1
                self.stats.hashed_bytes += path.stat().st_size
            else:
                manifest[rel] = self.sha256(path, progress)
        return manifest

    def sha256(self, path: Path, progress: ReadProgress | None = None) -> str:
        """The file's SHA-256, read from the cache when the file has not changed since."""
        before = _Key.of(path)
        remembered = self._lookup(before)
        if remembered is not None:
            self.stats.remembered += 1
            if progress is not None:
                progress(before.size)
            return remembered
        started = time.time_ns()
        sha = sha256_file(path, progress)
        self.stats.hashed += 1
        self.stats.hashed_bytes += before.size
        settled = before.mtime_ns < started - int(RACY_S * 1e9)
        if settled and _Key.of(path) == before:
            self._store(before, sha)
        return sha

    def _lookup(self, key: _Key) -> str | None:
        if self._db is None:
            return None
        try:
            row = self._db.execute(
                "SELECT sha256 FROM hashes WHERE path = ? AND size = ? AND mtime_ns = ?"
                " AND inode = ?",
                (key.path, key.size, key.mtime_ns, key.inode),
            ).fetchone()
        except sqlite3.Error as exc:
            log.warning("hash cache lookup failed, hashing %s (%s)", key.path, exc)
            return None
        if row is None or not _is_sha256(row[0]):
            return None
        return str(row[0])

    def _store(self, key: _Key, sha: str) -> None:
        if self._db is None:
            return
        try:
            with self._db:
                self._db.execute(
                    "INSERT OR REPLACE INTO hashes (path, size, mtime_ns, inode, sha256)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (key.path, key.size, key.mtime_ns, key.inode, sha),
                )
        except sqlite3.Error as exc:  # locked for long, disk full: the next run hashes again
            log.warning("hash cache could not remember %s (%s)", key.path, exc)


def _private_file(path: Path) -> None:
    """Make the cache's folders (0700) and file (0600) as only this user may read them: it
    names every file of the user's projects."""
    missing = [folder for folder in (path.parent, *path.parent.parents) if not folder.exists()]
    for folder in reversed(missing):
        with contextlib.suppress(FileExistsError):
            folder.mkdir(mode=0o700)
    os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))


def _connect_checked(path: Path) -> sqlite3.Connection:
    """Open the cache; raise sqlite3.DatabaseError when it is not ours to trust."""
    db = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, check_same_thread=False)
    try:
        version = db.execute("PRAGMA user_version").fetchone()[0]
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if version == 0 and not tables:
            with db:
                db.execute(_SCHEMA)
                db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        elif version != SCHEMA_VERSION:
            raise sqlite3.DatabaseError(f"schema version {version}, not {SCHEMA_VERSION}")
        check = db.execute("PRAGMA quick_check").fetchone()[0]
        if check != "ok":
            raise sqlite3.DatabaseError(f"integrity check: {check}")
        db.execute("SELECT path, size, mtime_ns, inode, sha256 FROM hashes LIMIT 1").fetchall()
    except BaseException:
        db.close()
        raise
    return db


def _is_sha256(value: object) -> bool:
    return (
        isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value)
    )
