"""The secret Workers join a Manager with, and its rotation.

A Manager's join secret is the one configured (FLAMENCO_MANAGER_SECRET, `[manager] secret`),
else the one in its data folder's `join-secret` file, made on its first start.
`flamenco managers rotate-secret` writes a new one into that file; the running Manager reads
it again at the next registration, so no restart is needed. Workers that joined before keep
their own tokens: only a new registration needs the secret.
"""

from __future__ import annotations

import hmac
import secrets
from pathlib import Path

from flamenco.secret_files import write_secret_file

FILE_NAME = "join-secret"


def secret_file(data_dir: Path) -> Path:
    return data_dir / FILE_NAME


def write_join_secret(data_dir: Path, secret: str) -> Path:
    """Replace the join secret file in one step; it is 0600 from its first byte on."""
    return write_secret_file(secret_file(data_dir), secret + "\n")


def read_join_secret(data_dir: Path) -> str:
    return secret_file(data_dir).read_text().strip()


def new_join_secret() -> str:
    return secrets.token_urlsafe(24)


class JoinSecret:
    """The current join secret of a running Manager."""

    def __init__(self, configured: str, data_dir: Path) -> None:
        self.configured = configured
        self.path = secret_file(data_dir)
        self._stamp: tuple[int, int] | None = None
        self._value = configured
        if not configured and not self.path.exists():
            write_join_secret(data_dir, new_join_secret())

    def current(self) -> str:
        if self.configured:
            return self.configured
        stat = self.path.stat()
        stamp = (stat.st_mtime_ns, stat.st_ino)  # a rotation replaces the file: a new inode
        if stamp != self._stamp:
            self._value, self._stamp = read_join_secret(self.path.parent), stamp
        return self._value

    def matches(self, given: str) -> bool:
        return hmac.compare_digest(given.encode(), self.current().encode())
