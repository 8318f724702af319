"""The outbox on real SQLite: what the other side refuses for good is set aside, with its reason,
the task's run is reported as failed, and the items behind it flow on; what may heal stays."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from flamenco import wire
from flamenco.client import ApiError, Unreachable
from flamenco.core.states import TaskStatus
from flamenco.outbox import MAX_BATCH_BYTES, PARALLEL_FILES, FrameItem, Outbox
from flamenco.outbox_refusals import STRIKES

LONG_NAME = "x" * 250 + "_000001.png"
TOO_LONG = "The frame file name is too long for the Server's output folder."


class Upstream:
    """The other side: takes everything except what `refuse` answers an error for."""

    def __init__(self, refuse: Callable[[object], Exception | None]) -> None:
        self.refuse = refuse
        self.frames: list[FrameItem] = []
        self.batches: list[list[wire.TaskUpdate]] = []

    async def send_frame(self, item: FrameItem) -> None:
        if (error := self.refuse(item)) is not None:
            raise error
        self.frames.append(item)

    async def send_updates(self, texts: list[str]) -> None:
        updates = [wire.TaskUpdate.model_validate_json(text) for text in texts]
        for update in updates:
            if (error := self.refuse(update)) is not None:
                raise error
        self.batches.append(updates)

    def updates(self) -> list[wire.TaskUpdate]:
        return [u for batch in self.batches for u in batch]


def flush(outbox: Outbox, upstream: Upstream) -> int:
    return asyncio.run(outbox.flush(upstream.send_updates, upstream.send_frame))


def frame(task_id: str, number: int, name: str = "") -> FrameItem:
    return FrameItem(task_id, number, "ab" * 32, name or f"f_{number:06d}.png", job_id="job1")


def update(task_id: str, status: TaskStatus | None = None, **fields: object) -> wire.TaskUpdate:
    return wire.TaskUpdate(
        update_id=uuid.uuid4().hex, task_id=task_id, status=status, worker="w1", **fields
    )


def refuse_long_names(status: int = 422) -> Callable[[object], Exception | None]:
    def refuse(item: object) -> Exception | None:
        if isinstance(item, FrameItem) and item.filename == LONG_NAME:
            return ApiError(status, TOO_LONG)
        return None

    return refuse


@pytest.fixture
def outbox(tmp_path: Path) -> Outbox:
    box = Outbox(tmp_path / "outbox.sqlite")
    yield box
    box.close()


def test_a_frame_refused_for_good_is_set_aside_and_the_items_behind_it_are_delivered(
    outbox: Outbox,
) -> None:
    bad_done = update("bad", TaskStatus.COMPLETED, progress=1.0)
    good_done = update("good", TaskStatus.COMPLETED, progress=1.0)
    outbox.add_frame(frame("bad", 1, LONG_NAME))
    outbox.add_frame(frame("good", 1))
    outbox.add_updates([good_done, bad_done])
    upstream = Upstream(refuse_long_names())

    assert flush(outbox, upstream) == 3
    assert [f.task_id for f in upstream.frames] == ["good"]
    # The completion of the run that lost its frame went up as a failure with the reason, in
    # the completion's place (same id: it was never sent).
    sent = {u.task_id: u for u in upstream.updates()}
    assert sent["good"] == good_done
    assert sent["bad"].update_id == bad_done.update_id
    assert sent["bad"].status == TaskStatus.FAILED
    assert sent["bad"].error is not None and TOO_LONG in sent["bad"].error
    assert "Frame 1" in sent["bad"].error and "task bad" in sent["bad"].error
    assert len(outbox) == 0
    [aside] = outbox.set_aside()
    assert outbox.set_aside_count() == 1
    assert (aside.task_id, aside.kind, aside.status) == ("bad", "frame", 422)
    assert aside.reason == TOO_LONG
    assert FrameItem(**json.loads(aside.payload)).filename == LONG_NAME
    assert aside.set_aside_at


def test_a_completion_that_comes_after_its_frame_was_set_aside_becomes_a_failure(
    tmp_path: Path,
) -> None:
    """The frame is refused while the task still renders; the run's end comes later, even after
    a restart, and only that run's end is turned: the next run of the task completes."""
    outbox = Outbox(tmp_path / "outbox.sqlite")
    outbox.add_frame(frame("bad", 1, LONG_NAME))
    upstream = Upstream(refuse_long_names())
    assert flush(outbox, upstream) == 0
    outbox.close()

    outbox = Outbox(tmp_path / "outbox.sqlite")
    try:
        outbox.add_update(update("bad", TaskStatus.ACTIVE, progress=0.5))
        outbox.add_update(first_end := update("bad", TaskStatus.COMPLETED, progress=1.0))
        outbox.add_update(second_end := update("bad", TaskStatus.COMPLETED, progress=1.0))
        assert flush(outbox, upstream) == 3
        statuses = [(u.update_id, u.status) for u in upstream.updates()]
        assert statuses[1:] == [
            (first_end.update_id, TaskStatus.FAILED),
            (second_end.update_id, TaskStatus.COMPLETED),
        ]
        assert TOO_LONG in (upstream.updates()[1].error or "")
    finally:
        outbox.close()


def test_a_server_error_that_repeats_for_the_same_item_sets_it_aside(outbox: Outbox) -> None:
    outbox.add_frame(frame("bad", 1, LONG_NAME))
    outbox.add_frame(frame("good", 1))
    upstream = Upstream(refuse_long_names(500))
    for _ in range(STRIKES - 1):  # may heal: it stays at the head, and nothing passes it
        with pytest.raises(ApiError):
            flush(outbox, upstream)
        assert len(outbox) == 2 and not outbox.set_aside()
    assert flush(outbox, upstream) == 1
    assert [f.task_id for f in upstream.frames] == ["good"]
    [aside] = outbox.set_aside()
    assert (aside.task_id, aside.status) == ("bad", 500)


@pytest.mark.parametrize(
    "error",
    [
        ApiError(401, "The token is not valid."),
        ApiError(408, "The request took too long."),
        ApiError(429, "Too many requests."),
        ApiError(502, "Bad gateway."),
        ApiError(503, "The updates could not be applied; send them again."),
        ApiError(504, "Gateway timeout."),
        Unreachable("The Server cannot be reached."),
    ],
    ids=lambda e: str(getattr(e, "status", "unreachable")),
)
def test_a_temporary_failure_keeps_the_item_however_often_it_comes(
    outbox: Outbox, error: Exception
) -> None:
    outbox.add_frame(frame("t1", 1))
    outbox.add_update(update("t1", TaskStatus.COMPLETED, progress=1.0))
    down = Upstream(lambda item: error)
    for _ in range(STRIKES * 2):
        with pytest.raises(type(error)):
            flush(outbox, down)
    assert len(outbox) == 2 and not outbox.set_aside()
    back = Upstream(lambda item: None)
    assert flush(outbox, back) == 2
    assert [u.status for u in back.updates()] == [TaskStatus.COMPLETED]


def test_a_refused_update_in_a_batch_is_found_and_the_others_go_up(outbox: Outbox) -> None:
    """The batch is refused as a whole; the updates then go one at a time until the refused
    one is set aside, and in batches again after it. A refused end of a run is followed by a
    failure of its own."""
    before = [update("t1", TaskStatus.ACTIVE) for _ in range(3)]
    poison = update("t2", TaskStatus.COMPLETED, activity="poison")
    after = [update("t3", TaskStatus.ACTIVE) for _ in range(3)]
    outbox.add_updates([*before, poison, *after])

    def refuse(item: object) -> Exception | None:
        bad = isinstance(item, wire.TaskUpdate) and item.activity == "poison"
        return ApiError(422, "The update is not valid.") if bad else None

    upstream = Upstream(refuse)
    assert flush(outbox, upstream) == 7  # six, and the failure reported for t2
    assert [len(batch) for batch in upstream.batches] == [1, 1, 1, 4]
    assert [u.update_id for u in upstream.updates()[:6]] == [u.update_id for u in [*before, *after]]
    failure = upstream.updates()[6]
    assert (failure.task_id, failure.status, failure.worker) == ("t2", TaskStatus.FAILED, "w1")
    assert failure.error == "An update of task t2 was refused: The update is not valid."
    [aside] = outbox.set_aside()
    assert wire.TaskUpdate.model_validate_json(aside.payload) == poison


def test_a_refused_failure_of_its_own_is_only_set_aside(outbox: Outbox) -> None:
    outbox.add_update(update("t1", TaskStatus.COMPLETED))
    upstream = Upstream(lambda item: ApiError(409, "No."))
    assert flush(outbox, upstream) == 0  # the completion, then the failure reported for it
    assert [a.task_id for a in outbox.set_aside()] == ["t1", "t1"]
    assert len(outbox) == 0


def test_a_task_the_other_side_no_longer_gives_us_is_not_reported(outbox: Outbox) -> None:
    """404: the task was taken back or its job deleted; its completion goes up as it is and the
    other side ignores it."""
    outbox.add_frame(frame("gone", 1))
    outbox.add_update(done := update("gone", TaskStatus.COMPLETED))
    upstream = Upstream(
        lambda item: (
            ApiError(404, "Task 'gone' is not leased to this Manager.")
            if isinstance(item, FrameItem)
            else None
        )
    )
    assert flush(outbox, upstream) == 1
    assert upstream.updates() == [done]
    assert [a.status for a in outbox.set_aside()] == [404]


def test_updates_go_up_in_requests_of_up_to_a_thousand_and_a_bounded_size(
    outbox: Outbox,
) -> None:
    """A busy site's completions leave in a few large requests (the wire's bound of 1000 a
    batch), and updates carrying long logs in batches small enough for any body limit."""
    small = [update(f"t{n}", TaskStatus.COMPLETED) for n in range(2500)]
    line = "y" * 10_000
    logged = [update(f"l{n}", TaskStatus.ACTIVE, log=[line] * 100) for n in range(12)]
    for item in [*small, *logged]:
        outbox.add_update(item)
    upstream = Upstream(lambda _: None)
    assert flush(outbox, upstream) == len(small) + len(logged)
    assert [len(batch) for batch in upstream.batches[:2]] == [1000, 1000]
    sizes = [sum(len(u.model_dump_json()) for u in batch) for batch in upstream.batches]
    assert len(sizes) >= 5 and max(sizes) <= MAX_BATCH_BYTES  # 12 MB of logs: 3 at least
    assert [u.update_id for u in upstream.updates()] == [u.update_id for u in small + logged]
    assert len(outbox) == 0


class ParallelUpstream(Upstream):
    """Counts how many files are in flight at once, and the order things arrive in."""

    def __init__(self, refuse: Callable[[object], Exception | None]) -> None:
        super().__init__(refuse)
        self.in_flight: set[str] = set()
        self.most_in_flight = 0
        self.arrivals: list[str] = []

    async def send_frame(self, item: FrameItem) -> None:
        assert item.sha256 not in self.in_flight, "one blob uploaded twice at once"
        self.in_flight.add(item.sha256)
        self.most_in_flight = max(self.most_in_flight, len(self.in_flight))
        try:
            await asyncio.sleep(0)  # the others start meanwhile, if they may
            await super().send_frame(item)
            self.arrivals.append(f"frame {item.task_id}/{item.frame}")
        finally:
            self.in_flight.discard(item.sha256)

    async def send_updates(self, texts: list[str]) -> None:
        await super().send_updates(texts)
        self.arrivals += [f"update {u.task_id}" for u in self.batches[-1]]


def own_frame(task_id: str, number: int, name: str = "") -> FrameItem:
    """A frame with a blob of its own."""
    sha256 = f"{number:064x}"
    return FrameItem(task_id, number, sha256, name or f"f_{number:06d}.png", job_id="job1")


def flush_to(outbox: Outbox, upstream: ParallelUpstream) -> int:
    return asyncio.run(outbox.flush(upstream.send_updates, upstream.send_frame))


def test_files_go_up_several_at_once_and_what_follows_them_waits_for_all(
    outbox: Outbox,
) -> None:
    for number in range(1, 7):
        outbox.add_frame(own_frame("t1", number))
    outbox.add_update(update("t1", TaskStatus.COMPLETED))
    upstream = ParallelUpstream(lambda _: None)

    assert flush_to(outbox, upstream) == 7
    assert upstream.most_in_flight == PARALLEL_FILES
    assert sorted(upstream.arrivals[:6]) == sorted(f"frame t1/{n}" for n in range(1, 7))
    assert upstream.arrivals[6:] == ["update t1"]
    assert len(outbox) == 0


def test_one_blob_is_never_uploaded_twice_at_once(outbox: Outbox) -> None:
    outbox.add_frame(frame("t1", 1))
    outbox.add_frame(frame("t2", 1))  # the same picture, so the same blob
    outbox.add_frame(own_frame("t3", 3))
    upstream = ParallelUpstream(lambda _: None)

    assert flush_to(outbox, upstream) == 3
    assert len(upstream.frames) == 3 and len(outbox) == 0


def test_a_file_of_a_parallel_run_refused_for_good_is_set_aside_and_the_others_go_up(
    outbox: Outbox,
) -> None:
    outbox.add_frame(own_frame("good", 1))
    outbox.add_frame(own_frame("bad", 2, LONG_NAME))
    outbox.add_frame(own_frame("good", 3))
    flaky = {"left": 1}  # frame 3 is refused once with a server error, then taken

    def refuse(item: object) -> Exception | None:
        if isinstance(item, FrameItem) and item.frame == 3 and flaky["left"]:
            flaky["left"] -= 1
            return ApiError(500, "Try again.")
        return refuse_long_names()(item)

    outbox.add_updates([update("good", TaskStatus.COMPLETED), update("bad", TaskStatus.COMPLETED)])
    upstream = ParallelUpstream(refuse)

    assert flush_to(outbox, upstream) == 4
    assert sorted(f.frame for f in upstream.frames) == [1, 3]
    sent = {u.task_id: u for u in upstream.updates()}
    assert sent["good"].status == TaskStatus.COMPLETED
    assert sent["bad"].status == TaskStatus.FAILED and TOO_LONG in (sent["bad"].error or "")
    [aside] = outbox.set_aside()
    assert (aside.task_id, aside.status) == ("bad", 422)
    assert len(outbox) == 0
