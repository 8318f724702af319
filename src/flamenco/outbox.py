"""A persistent, ordered queue of what must reach the component above.

The Worker keeps one towards its Manager and the Manager one towards the Server. Frames and
task updates share one queue so that a task's completion never overtakes its frames. Items
leave the queue only once the other side has taken them, so a crash or an unreachable
upstream loses nothing; replays are harmless because every update carries its id.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from flamenco import wire
from flamenco.aio import TurnWriter
from flamenco.client import ApiError
from flamenco.db import connect_sqlite

log = logging.getLogger("flamenco.outbox")

MAX_BATCH = 200


@dataclass(frozen=True)
class FrameItem:
    """A file for upstream: a rendered frame, or (kind "artifact") another output of a task,
    such as its preview video, named by `filename` (frame is then 0)."""

    task_id: str
    frame: int
    sha256: str
    filename: str
    kind: str = "frame"


FILE_KINDS = ("frame", "artifact")


SendUpdates = Callable[[list[wire.TaskUpdate]], Awaitable[None]]
SendFrame = Callable[[FrameItem], Awaitable[None]]


class Outbox:
    def __init__(self, path: Path, writer: TurnWriter | None = None) -> None:
        # A crash loses nothing; a power loss may take the last items, which the component
        # below sends again (updates carry ids, replays are harmless).
        self.db = connect_sqlite(path)
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS outbox ("
            " seq INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, payload TEXT NOT NULL)"
        )
        # Items added in one turn of the event loop are written in one transaction; whoever
        # must know they are on disk (before acknowledging them) awaits `saved()`.
        self._pending: list[tuple[str, str]] = []
        self.writer = writer or TurnWriter()
        self.writer.add(self._write_pending)

    def add_update(self, update: wire.TaskUpdate) -> None:
        self._add("update", update.model_dump_json())

    def add_updates(self, updates: list[wire.TaskUpdate]) -> None:
        for update in updates:
            self.add_update(update)

    def add_frame(self, item: FrameItem) -> None:
        self._add(item.kind, json.dumps(item.__dict__))

    def _add(self, kind: str, payload: str) -> None:
        self._pending.append((kind, payload))
        self.writer.changed()

    async def saved(self) -> None:
        await self.writer.written()

    def _write_pending(self) -> None:
        rows, self._pending = self._pending, []
        if rows:
            with self.db:
                self.db.execute("BEGIN")
                self.db.executemany("INSERT INTO outbox (kind, payload) VALUES (?, ?)", rows)

    def __len__(self) -> int:
        self._write_pending()
        return self.db.execute("SELECT count(*) FROM outbox").fetchone()[0]

    def _head(self) -> list[tuple[int, str, str]]:
        self._write_pending()  # what was added in this turn is part of the queue already
        return self.db.execute(
            "SELECT seq, kind, payload FROM outbox ORDER BY seq LIMIT ?", (MAX_BATCH,)
        ).fetchall()

    def _last_seq(self) -> int:
        self._write_pending()
        return self.db.execute("SELECT coalesce(max(seq), 0) FROM outbox").fetchone()[0]

    def _remove(self, seqs: list[int]) -> None:
        with self.db:  # one transaction for the whole batch
            self.db.execute("BEGIN")
            self.db.executemany("DELETE FROM outbox WHERE seq = ?", [(s,) for s in seqs])

    async def flush(
        self,
        send_updates: SendUpdates,
        send_frame: SendFrame,
        keep_updates: bool = False,
        queued_now: bool = False,
    ) -> int:
        """Deliver everything in order; return how many items went out. With `queued_now`,
        only what is queued when the flush starts: later items wait for the next flush.

        Transport errors propagate, leaving the rest queued for the next try. An item the other
        side refuses for good (a 4xx that will not heal) is logged and dropped, so that one bad
        item cannot block the queue forever. With `keep_updates`, updates that are all that is
        left stay queued for the caller to carry in another request (`pending_updates`).
        """
        delivered = 0
        end = self._last_seq() if queued_now else None
        while head := [row for row in self._head() if end is None or row[0] <= end]:
            seq, kind, payload = head[0]
            if kind in FILE_KINDS:
                batch = [seq]
                await self._deliver(send_frame(FrameItem(**json.loads(payload))), payload)
            else:
                run = _leading_run(head, "update")
                if keep_updates and _only_updates(head, run):
                    break
                batch = [row[0] for row in run]
                updates = [wire.TaskUpdate.model_validate_json(row[2]) for row in run]
                await self._deliver(send_updates(updates), f"{len(updates)} updates")
            self._remove(batch)
            delivered += len(batch)
        return delivered

    def pending_updates(self) -> tuple[list[int], list[wire.TaskUpdate]]:
        """The queued updates with their sequence numbers, when the queue holds nothing else
        (and they fit in one batch); else nothing. Remove them with `remove` once delivered."""
        head = self._head()
        run = _leading_run(head, "update")
        if not _only_updates(head, run):
            return [], []
        return [row[0] for row in run], [wire.TaskUpdate.model_validate_json(r[2]) for r in run]

    def remove(self, seqs: list[int]) -> None:
        self._remove(seqs)

    @staticmethod
    async def _deliver(sending: Awaitable[None], what: str) -> None:
        try:
            await sending
        except ApiError as exc:
            if exc.transient:
                raise
            log.error("dropping outbox item refused by upstream (%s): %s", exc.message, what)

    def close(self) -> None:
        self._write_pending()
        self.db.close()


def _leading_run(rows: list[tuple[int, str, str]], kind: str) -> list[tuple[int, str, str]]:
    run = []
    for row in rows:
        if row[1] != kind:
            break
        run.append(row)
    return run


def _only_updates(head: list[tuple[int, str, str]], run: list[tuple[int, str, str]]) -> bool:
    return bool(run) and len(run) == len(head) < MAX_BATCH
