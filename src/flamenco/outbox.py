"""A persistent, ordered queue of what must reach the component above.

The Worker keeps one towards its Manager and the Manager one towards the Server. Frames and
task updates share one queue so that a task's completion never overtakes its frames. Items
leave the queue only once the other side has taken them, so a crash or an unreachable
upstream loses nothing; replays are harmless because every update carries its id.

One item the other side will never take (a permanent refusal) must not hold up the items
behind it: it is set aside, kept with its reason in the `set_aside` table, and the end of
its task's run is reported as a failure with that reason, so the task is retried or fails
visibly. Which refusals are permanent, and the failure then reported, is outbox_refusals.py's
to say.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from flamenco import wire
from flamenco.aio import TurnWriter
from flamenco.client import ApiError
from flamenco.core.frames import clip
from flamenco.core.names import quote_name
from flamenco.core.states import RELEASING_TASK_STATUSES, TaskStatus
from flamenco.db import utcnow
from flamenco.outbox_refusals import (
    MAX_ERROR,
    NOT_HELD,
    OWN_FAILURE_PREFIX,
    SetAside,
    Strikes,
    as_failure,
    own_failure,
)
from flamenco.store_versions import StoreMigration, open_store, script

log = logging.getLogger("flamenco.outbox")

# Items read per look at the queue; one request carries at most this many updates (the wire's
# own bound, wire.UpdateBatch) and MAX_BATCH_BYTES of them, so that a busy site's completions
# go up in a few large requests instead of many small ones, and stay far within the receiver's
# JSON body limit (16 MiB) whatever logs they carry.
MAX_BATCH = 1000
MAX_BATCH_BYTES = 4 * 1024 * 1024
# Files at the head of the queue go up this many at a time (one request each): a frame's
# request waits on the other side's checks, so one at a time caps a site at a few frames a
# second. What follows them still waits until every one of them is taken.
PARALLEL_FILES = 4


@dataclass(frozen=True)
class FrameItem:
    """A file for upstream: a rendered frame, or (kind "artifact") another output of a task,
    such as its preview video, named by `filename` (frame is then 0)."""

    task_id: str
    frame: int
    sha256: str
    filename: str
    kind: str = "frame"
    job_id: str = ""  # for the logs; items queued before it existed have none

    def describe(self) -> str:
        if self.kind == "artifact":
            return f"The file {quote_name(self.filename)} of task {self.task_id}"
        return f"Frame {self.frame} ({quote_name(self.filename)}) of task {self.task_id}"


FILE_KINDS = ("frame", "artifact")

# The outbox's versions (store_versions.py): append a migration to change a table.
# set_aside.awaiting_end: the run of its task has not ended yet in this queue; its completion
# is to be reported as a failure with this reason.
MIGRATIONS: list[StoreMigration] = [
    script(
        "CREATE TABLE IF NOT EXISTS outbox ("
        " seq INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, payload TEXT NOT NULL);"
        "CREATE TABLE IF NOT EXISTS set_aside ("
        " seq INTEGER PRIMARY KEY, kind TEXT NOT NULL, payload TEXT NOT NULL,"
        " task_id TEXT NOT NULL, status INTEGER NOT NULL, reason TEXT NOT NULL,"
        " set_aside_at TEXT NOT NULL, awaiting_end INTEGER NOT NULL DEFAULT 0)"
    )
]


# Updates go as the JSON texts they were queued as: no parse and dump on the way.
SendUpdates = Callable[[list[str]], Awaitable[None]]
SendFrame = Callable[[FrameItem], Awaitable[None]]
Row = tuple[int, str, str]  # seq, kind, payload


def update_batch(texts: list[str]) -> str:
    """The wire.UpdateBatch of updates given as the JSON texts they were queued as: the text
    its model_dump_json would make, without parsing and dumping each update again."""
    return '{"updates":[' + ",".join(texts) + "]}"


class Outbox:
    def __init__(self, path: Path, writer: TurnWriter | None = None) -> None:
        # A crash loses nothing; a power loss may take the last items, which the component
        # below sends again (updates carry ids, replays are harmless).
        self.db = open_store(path, MIGRATIONS)
        self._awaiting_end: dict[str, str] = dict(
            self.db.execute("SELECT task_id, reason FROM set_aside WHERE awaiting_end ORDER BY seq")
        )
        self._strikes = Strikes()
        self._one_by_one_to = 0  # updates up to this seq go one at a time: one was refused
        self._files_one_by_one_to = 0  # files up to this seq too: one of a parallel run failed
        # Items added in one turn of the event loop are written in one transaction; whoever
        # must know they are on disk (before acknowledging them) awaits `saved()`.
        self._pending: list[tuple[str, str]] = []
        self.writer = writer or TurnWriter()
        self.writer.add(self._write_pending)

    def add_update(self, update: wire.TaskUpdate) -> None:
        if update.task_id in self._awaiting_end and update.status in RELEASING_TASK_STATUSES:
            update = self._end_of_spoilt_run(update)
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

    def _remove_head(self, last: int) -> None:
        """Remove the items at the head up to `last`: a batch taken (one statement)."""
        with self.db:
            self.db.execute("BEGIN")
            self.db.execute("DELETE FROM outbox WHERE seq <= ?", (last,))

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
        Updates go to `send_updates` as the JSON texts they were queued as (`update_batch`).

        Transport errors and temporary refusals propagate, leaving the rest queued for the next
        try. An item the other side refuses for good is set aside (`_set_aside`), so that one
        bad item cannot block the queue; in a batch of updates that is refused, the updates
        then go one at a time until the refused one is found. Files at the head go up
        PARALLEL_FILES at a time; when one of them fails, those taken leave the queue and the
        rest go one at a time, their failures judged as any item's. With `keep_updates`, updates
        that are all that is left stay queued for the caller to carry in another request
        (`pending_updates`).
        """
        delivered = 0
        end = self._last_seq() if queued_now else None
        while head := [row for row in self._head() if end is None or row[0] <= end]:
            seq, kind, payload = head[0]
            files = _files_at_head(head) if seq > self._files_one_by_one_to else []
            if len(files) > 1:
                taken = await self._send_files(send_frame, files)
                delivered += taken
                if taken < len(files):
                    self._files_one_by_one_to = files[-1][0]
                continue
            if kind in FILE_KINDS:
                batch = head[:1]
                sending = send_frame(FrameItem(**json.loads(payload)))
            else:
                batch = _leading_run(head, "update")
                if keep_updates and _only_updates(head, batch):
                    break
                if seq <= self._one_by_one_to:
                    batch = batch[:1]
                sending = send_updates([row[2] for row in batch])
            refusal = await self._strikes.refusal(sending, batch[0][0], len(batch))
            if refusal is None:
                self._remove_head(batch[-1][0])
                delivered += len(batch)
            elif len(batch) > 1:
                self._one_by_one_to = batch[-1][0]
            else:
                reported = self._set_aside(batch[0], refusal)
                if end is not None and reported is not None:
                    end = reported  # a failure this flush reported goes with it
        return delivered

    async def _send_files(self, send_frame: SendFrame, files: list[Row]) -> int:
        """Send these files at once; those taken leave the queue. How many were taken."""
        outcomes = await asyncio.gather(
            *(send_frame(FrameItem(**json.loads(payload))) for _, _, payload in files),
            return_exceptions=True,
        )
        taken = [
            row[0]
            for row, outcome in zip(files, outcomes, strict=True)
            if not isinstance(outcome, BaseException)
        ]
        if taken:
            self._remove(taken)
        return len(taken)

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

    def pending_files(self) -> dict[str, str]:
        """The blobs of the frames and artifacts still to go upstream, each with the job and
        task it belongs to: a bounded cache keeps them (blob_cache.py)."""
        self._write_pending()
        kinds = ", ".join("?" for _ in FILE_KINDS)
        rows = self.db.execute(f"SELECT payload FROM outbox WHERE kind IN ({kinds})", FILE_KINDS)
        files: dict[str, str] = {}
        for (payload,) in rows:
            item = json.loads(payload)
            files[item["sha256"]] = f"job {item.get('job_id') or '?'} task {item['task_id']}"
        return files

    def _set_aside(self, row: Row, refusal: ApiError) -> int | None:
        """Move a refused item out of the queue, and see that its task's run ends as failed;
        return the sequence number of a failure it queued, if it did.

        A refused update that ended the run is followed by a failure of its own. Otherwise
        the end of the run is queued behind the item (a task's news keeps its order) or is
        still to come: a completion becomes a failure with the refusal's reason, so that the
        Server never counts a task completed whose frame it lacks. A 404 says the other side
        no longer gives us the task (revoked, or its job deleted): nothing is reported.
        """
        seq, kind, payload = row
        self._write_pending()  # what came in while the item was on its way is in the queue too
        item, update = _parse(kind, payload)
        task_id = item.task_id if item is not None else update.task_id
        what = item.describe() if item is not None else f"An update of task {task_id}"
        reason = clip(f"{what} was refused: {refusal.message}", MAX_ERROR)
        report = rewritten = awaiting = None
        if refusal.status == NOT_HELD:
            pass
        elif item is None and update.status in RELEASING_TASK_STATUSES:
            if not update.update_id.startswith(OWN_FAILURE_PREFIX):
                report = own_failure(task_id, update.worker, reason)
        elif (ending := self._queued_end(task_id, seq)) is not None:
            if ending[1].status == TaskStatus.COMPLETED:
                rewritten = (ending[0], as_failure(ending[1], reason))
        else:
            awaiting = reason
        now = utcnow().isoformat()
        record = (seq, kind, payload, task_id, refusal.status, refusal.message, now)
        with self.db:
            self.db.execute("BEGIN")
            self.db.execute(
                "INSERT INTO set_aside (seq, kind, payload, task_id, status, reason,"
                " set_aside_at, awaiting_end) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (*record, awaiting is not None),
            )
            self.db.execute("DELETE FROM outbox WHERE seq = ?", (seq,))
            if rewritten is not None:
                self.db.execute(
                    "UPDATE outbox SET payload = ? WHERE seq = ?",
                    (rewritten[1].model_dump_json(), rewritten[0]),
                )
            reported = None
            if report is not None:
                reported = self.db.execute(
                    "INSERT INTO outbox (kind, payload) VALUES ('update', ?)",
                    (report.model_dump_json(),),
                ).lastrowid
        if awaiting is not None:
            self._awaiting_end.setdefault(task_id, awaiting)  # the first reason is the news
        self._one_by_one_to = 0  # found: the updates behind it go in batches again
        ctx = {
            "task": task_id,
            "job": item.job_id if item is not None else None,
            "worker": update.worker if update is not None else None,
        }
        failing = report or rewritten or awaiting
        log.error(
            "set aside, the queue goes on: %s%s",
            reason,
            " The task's run is reported as failed." if failing else "",
            extra=ctx,
        )
        return reported

    def _queued_end(self, task_id: str, after: int) -> tuple[int, wire.TaskUpdate] | None:
        """The first queued update after `after` that ends a run of the task, if any."""
        rows = self.db.execute(
            "SELECT seq, payload FROM outbox WHERE seq > ? AND kind = 'update' ORDER BY seq",
            (after,),
        )
        for seq, payload in rows:
            if f'"{task_id}"' not in payload:  # most updates are another task's: skip parsing
                continue
            update = wire.TaskUpdate.model_validate_json(payload)
            if update.task_id == task_id and update.status in RELEASING_TASK_STATUSES:
                return seq, update
        return None

    def _end_of_spoilt_run(self, update: wire.TaskUpdate) -> wire.TaskUpdate:
        """The end of a run one of whose items was set aside: a completion becomes a failure
        with the reason; whatever else ended the run stands."""
        reason = self._awaiting_end.pop(update.task_id)
        with self.db:
            self.db.execute(
                "UPDATE set_aside SET awaiting_end = 0 WHERE task_id = ?", (update.task_id,)
            )
        if update.status != TaskStatus.COMPLETED:
            return update
        log.warning(
            "task %s: its completion is reported as a failure: %s",
            update.task_id,
            reason,
            extra={"task": update.task_id, "worker": update.worker},
        )
        return as_failure(update, reason)

    def set_aside_count(self) -> int:
        return self.db.execute("SELECT count(*) FROM set_aside").fetchone()[0]

    def set_aside(self) -> list[SetAside]:
        """What was set aside, oldest first."""
        rows = self.db.execute(
            "SELECT seq, kind, payload, task_id, status, reason, set_aside_at"
            " FROM set_aside ORDER BY seq"
        )
        return [SetAside(*row) for row in rows]

    def close(self) -> None:
        self._write_pending()
        self.db.close()


def _leading_run(rows: list[Row], kind: str) -> list[Row]:
    """The items of `kind` at the head, up to MAX_BATCH_BYTES of payload (at least one)."""
    run: list[Row] = []
    size = 0
    for row in rows:
        size += len(row[2])
        if row[1] != kind or (run and size > MAX_BATCH_BYTES):
            break
        run.append(row)
    return run


def _files_at_head(rows: list[Row]) -> list[Row]:
    """The files at the head that may go up together: at most PARALLEL_FILES, each blob once
    (its bytes need not cross twice at the same time)."""
    run: list[Row] = []
    blobs: set[str] = set()
    for row in rows:
        if row[1] not in FILE_KINDS or len(run) == PARALLEL_FILES:
            break
        sha256 = json.loads(row[2])["sha256"]
        if sha256 in blobs:
            break
        blobs.add(sha256)
        run.append(row)
    return run


def _only_updates(head: list[Row], run: list[Row]) -> bool:
    return bool(run) and len(run) == len(head) < MAX_BATCH


def _parse(kind: str, payload: str) -> tuple[FrameItem, None] | tuple[None, wire.TaskUpdate]:
    if kind in FILE_KINDS:
        return FrameItem(**json.loads(payload)), None
    return None, wire.TaskUpdate.model_validate_json(payload)
