"""Database engines for every component: SQLite (WAL) by default, PostgreSQL for the Server."""

from __future__ import annotations

import json
import logging
import re
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import JSON, DateTime, Engine, create_engine, event
from sqlalchemy.orm import DeclarativeBase, sessionmaker
from sqlalchemy.types import TypeDecorator

log = logging.getLogger("flamenco.db")


def utcnow() -> datetime:
    return datetime.now(UTC)


def connect_sqlite(path: Path) -> sqlite3.Connection:
    """A plain SQLite file for a component's own queue or state, in autocommit mode (callers
    open their transactions). WAL + NORMAL survives a crash of the process; only a power loss
    may take the last transactions. Its checkpoints run on a thread of their own
    (`WalCheckpoints`) until the connection is closed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(
        path, isolation_level=None, check_same_thread=False, factory=_CheckpointedConnection
    )
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.checkpoints = WalCheckpoints(db, path)
    return db


class WalCheckpoints:
    """SQLite's WAL checkpoints on a thread of their own.

    A checkpoint copies the log back into the database file and syncs it to disk. Left to
    SQLite, it runs inside whichever commit crosses 1,000 pages of log: on an event loop that
    commits hundreds of times a second, a stall of tens of milliseconds every second or so.
    """

    def __init__(self, db: sqlite3.Connection, path: Path, every_s: float = 1.0) -> None:
        db.execute("PRAGMA wal_autocheckpoint=0")
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(path, every_s), name=f"checkpoints {path.name}", daemon=True
        )
        self._thread.start()

    def _run(self, path: Path, every_s: float) -> None:
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        try:
            while not self._stop.wait(every_s):
                try:
                    db.execute("PRAGMA wal_checkpoint(PASSIVE)")
                except sqlite3.Error as exc:  # busy or gone: the next round tries again
                    log.warning("checkpoint of %s failed: %s", path.name, exc)
        finally:
            db.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


class _CheckpointedConnection(sqlite3.Connection):
    """A connection that stops its checkpoint thread when it is closed."""

    checkpoints: WalCheckpoints | None = None

    def close(self) -> None:
        if self.checkpoints is not None:
            self.checkpoints.close()
            self.checkpoints = None
        super().close()


class UTCDateTime(TypeDecorator[datetime]):
    """Timestamps stored in UTC and always returned timezone-aware, on SQLite too."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime, dict[str, Any]: JSON, list[Any]: JSON}


IN_CHUNK = 500  # ids in one `IN (...)` list: well under every driver's limit of bound parameters


def in_chunks(ids: Sequence[str], size: int = IN_CHUNK) -> Iterator[Sequence[str]]:
    """The ids in slices of `size`, one statement's `IN (...)` list each."""
    for start in range(0, len(ids), size):
        yield ids[start : start + size]


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def _tune_sqlite(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def json_text(value: Any) -> str:
    """The text a JSON column stores: orjson's, about ten times as fast as the standard
    library's on a task's command (a studio's job writes 100,000 of them). What orjson refuses
    (a lone surrogate, an integer past 64 bits: a client's bad input) is written by the
    standard library as before; either text reads back the same (`json_value`)."""
    try:
        return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()
    except orjson.JSONEncodeError:
        return json.dumps(value)


# A run of 19 digits or more: a number orjson may not read exactly (it reads an integer past 64
# bits as a float), so a text holding one is read by the standard library.
_LONG_NUMBER = re.compile(r"[0-9]{19}")
_LONG_NUMBER_BYTES = re.compile(rb"[0-9]{19}")


def json_value(text: str | bytes) -> Any:
    """A JSON column's value (the engines' reader; PostgreSQL's driver hands bytes): orjson's
    reading, about four times as fast as the standard library's on a lease's command, frames
    and requirements, except for a text that orjson refuses (NaN, a lone surrogate) or might
    read otherwise (a long number), which json.loads reads as before."""
    pattern = _LONG_NUMBER if isinstance(text, str) else _LONG_NUMBER_BYTES
    if len(text) < 19 or pattern.search(text) is None:  # most are short: "[]", "{}", "[12]"
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            pass
    return json.loads(text)


def make_engine(url: str) -> Engine:
    json_codec = {"json_serializer": json_text, "json_deserializer": json_value}
    if url.startswith("sqlite"):
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": 10}, **json_codec
        )
        event.listen(engine, "connect", _tune_sqlite)
    else:
        engine = create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20, **json_codec)
    return engine


def make_sessions(engine: Engine) -> sessionmaker:
    return sessionmaker(engine, expire_on_commit=False)
