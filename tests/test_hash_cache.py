"""The hash cache: an unchanged file is not read again; a changed one is; a cache that is
corrupt or from another version is rebuilt, never trusted."""

from __future__ import annotations

import hashlib
import os
import sqlite3
from pathlib import Path

import pytest

from flamenco.addon.render_flamenco import hash_cache
from flamenco.addon.render_flamenco.hash_cache import HashCache

HOUR_NS = 3600 * 10**9


def settled_file(path: Path, data: bytes) -> Path:
    """A file last changed an hour ago, as a project's textures usually are."""
    path.write_bytes(data)
    mtime = path.stat().st_mtime_ns - HOUR_NS
    os.utime(path, ns=(mtime, mtime))
    return path


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def swap_content_keeping_stat(path: Path, data: bytes) -> None:
    """New bytes of the same size in the same inode, mtime set back: only reading tells."""
    st = path.stat()
    assert len(data) == st.st_size
    with path.open("r+b") as f:
        f.write(data)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert (path.stat().st_ino, path.stat().st_mtime_ns) == (st.st_ino, st.st_mtime_ns)


def test_an_unchanged_file_is_not_read_again(tmp_path: Path) -> None:
    texture = settled_file(tmp_path / "tex.png", b"a" * 1000)
    db = tmp_path / "cache" / "hashes.sqlite3"
    with HashCache(db) as cache:
        assert cache.sha256(texture) == sha(b"a" * 1000)
        assert (cache.stats.hashed, cache.stats.hashed_bytes) == (1, 1000)
    swap_content_keeping_stat(texture, b"b" * 1000)
    with HashCache(db) as again:  # a later submission, another process
        # The remembered hash of the old bytes proves the file was not read.
        assert again.sha256(texture) == sha(b"a" * 1000)
        assert (again.stats.hashed, again.stats.remembered) == (0, 1)


@pytest.mark.parametrize("change", ["size", "mtime", "inode"])
def test_a_changed_file_is_hashed_again(tmp_path: Path, change: str) -> None:
    texture = settled_file(tmp_path / "tex.png", b"a" * 1000)
    db = tmp_path / "hashes.sqlite3"
    with HashCache(db) as cache:
        cache.sha256(texture)
    st = texture.stat()
    if change == "size":
        new = b"c" * 999
        texture.write_bytes(new)
        os.utime(texture, ns=(st.st_atime_ns, st.st_mtime_ns))
    elif change == "mtime":
        new = b"c" * 1000
        swap_content_keeping_stat(texture, new)
        os.utime(texture, ns=(st.st_atime_ns, st.st_mtime_ns + 1))
    else:
        new = b"c" * 1000
        replacement = settled_file(tmp_path / "new.png", new)
        os.utime(replacement, ns=(st.st_atime_ns, st.st_mtime_ns))
        replacement.replace(texture)  # same path, size and mtime; another inode
        assert texture.stat().st_ino != st.st_ino
    with HashCache(db) as again:
        assert again.sha256(texture) == sha(new)
        assert again.stats.hashed == 1


def test_a_file_changed_just_before_hashing_is_not_remembered(tmp_path: Path) -> None:
    """Its next change could land in the same mtime tick, with the same size: unseen."""
    fresh = tmp_path / "fresh.png"
    fresh.write_bytes(b"a" * 10)
    db = tmp_path / "hashes.sqlite3"
    with HashCache(db) as cache:
        cache.sha256(fresh)
    swap_content_keeping_stat(fresh, b"b" * 10)
    with HashCache(db) as again:
        assert again.sha256(fresh) == sha(b"b" * 10)


def test_files_written_for_the_submission_are_hashed_and_not_remembered(tmp_path: Path) -> None:
    texture = settled_file(tmp_path / "tex.png", b"t" * 10)
    rewritten = settled_file(tmp_path / "scene.blend", b"s" * 10)
    db = tmp_path / "hashes.sqlite3"
    files = {"tex.png": texture, "scene.blend": rewritten}
    with HashCache(db) as cache:
        assert cache.manifest(files, {"scene.blend"}) == {
            "tex.png": sha(b"t" * 10),
            "scene.blend": sha(b"s" * 10),
        }
    swap_content_keeping_stat(texture, b"T" * 10)
    swap_content_keeping_stat(rewritten, b"S" * 10)
    with HashCache(db) as again:
        manifest = again.manifest(files)
    assert manifest == {"tex.png": sha(b"t" * 10), "scene.blend": sha(b"S" * 10)}


def remembered_wrongly(db: Path, texture: Path) -> None:
    """A row claiming a wrong hash for the texture as it is now."""
    st = texture.stat()
    with sqlite3.connect(db) as conn:
        conn.execute(
            "INSERT OR REPLACE INTO hashes VALUES (?, ?, ?, ?, ?)",
            (str(texture.absolute()), st.st_size, st.st_mtime_ns, st.st_ino, "0" * 64),
        )
    conn.close()


def test_a_cache_from_another_version_is_rebuilt(tmp_path: Path) -> None:
    texture = settled_file(tmp_path / "tex.png", b"a" * 100)
    db = tmp_path / "hashes.sqlite3"
    with HashCache(db):
        pass
    remembered_wrongly(db, texture)
    with sqlite3.connect(db) as conn:
        conn.execute(f"PRAGMA user_version = {hash_cache.SCHEMA_VERSION + 1}")
    conn.close()
    with HashCache(db) as cache:
        assert cache.sha256(texture) == sha(b"a" * 100)
        assert cache.stats.hashed == 1
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == hash_cache.SCHEMA_VERSION
        rows = conn.execute("SELECT sha256 FROM hashes").fetchall()
    conn.close()
    assert rows == [(sha(b"a" * 100),)]


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda db: db.write_bytes(b"not a database at all" * 100), id="garbage"),
        pytest.param(lambda db: db.write_bytes(db.read_bytes()[:100]), id="truncated"),
        pytest.param(
            lambda db: db.write_bytes(db.read_bytes()[:-2048] + b"\xff" * 2048),
            id="overwritten-page",
        ),
    ],
)
def test_a_corrupt_cache_is_rebuilt(tmp_path: Path, damage: object) -> None:
    textures = [settled_file(tmp_path / f"t{i}.png", bytes([i]) * 4000) for i in range(40)]
    db = tmp_path / "hashes.sqlite3"
    with HashCache(db) as cache:
        for texture in textures:
            cache.sha256(texture)
    remembered_wrongly(db, textures[-1])
    damage(db)  # type: ignore[operator]
    with HashCache(db) as cache:
        hashes = [cache.sha256(t) for t in textures]
    assert hashes == [sha(bytes([i]) * 4000) for i in range(40)]
    with HashCache(db) as again:  # rebuilt: usable, and remembering again
        again.sha256(textures[0])
        assert again.stats.remembered == 1


def test_the_cache_lives_in_the_users_cache_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(hash_cache.sys, "platform", "linux")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert hash_cache.default_path() == tmp_path / "xdg" / "flamenco" / "hashes.sqlite3"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    expected = tmp_path / "home" / ".cache" / "flamenco" / "hashes.sqlite3"
    assert hash_cache.default_path() == expected


def test_the_cache_and_the_folders_it_makes_are_this_users_only(tmp_path: Path) -> None:
    # It names every file of the user's projects: no other user may read it.
    path = tmp_path / "cache-root" / "flamenco" / "hashes.sqlite3"
    with HashCache(path):
        pass
    modes = {p: p.stat().st_mode & 0o777 for p in (path.parent.parent, path.parent, path)}
    assert modes == {path.parent.parent: 0o700, path.parent: 0o700, path: 0o600}
