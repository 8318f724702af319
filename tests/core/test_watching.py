"""Decisions of a job watcher: what an event means, when the watch ends, how it reconnects."""

from __future__ import annotations

import pytest

from flamenco.core.states import JobStatus
from flamenco.core.watching import (
    JobProgress,
    Reaction,
    SseLines,
    exit_code,
    line_due,
    reaction,
    reconnect_delay,
)

REACTION_CASES = [
    ("connected", Reaction.REREAD),  # after every (re)connect: an end while away is seen
    ("job", Reaction.REREAD),
    ("ping", Reaction.REREAD),  # the 15-second keep-alive doubles as a safety net
    ("task", Reaction.IGNORE),  # comes with a job event
    ("frame", Reaction.IGNORE),
    ("log", Reaction.IGNORE),
    ("managers", Reaction.IGNORE),
    ("something-new", Reaction.IGNORE),
]


@pytest.mark.parametrize(("kind", "expected"), REACTION_CASES)
def test_reaction(kind: str, expected: Reaction) -> None:
    assert reaction(kind) is expected


EXIT_CASES = [
    (JobStatus.COMPLETED, 0),
    (JobStatus.FAILED, 1),
    (JobStatus.CANCELED, 2),
    (JobStatus.QUEUED, None),
    (JobStatus.ACTIVE, None),
    (JobStatus.PAUSED, None),
    (JobStatus.PAUSE_REQUESTED, None),
    (JobStatus.CANCEL_REQUESTED, None),  # not over until the Workers have stopped
    (JobStatus.REQUEUEING, None),
    ("no-such-status", None),
]


@pytest.mark.parametrize(("status", "code"), EXIT_CASES)
def test_exit_code(status: str, code: int | None) -> None:
    assert exit_code(status) == code


def test_every_job_status_is_decided() -> None:
    finals = {s for s in JobStatus if exit_code(s) is not None}
    assert finals == {JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELED}


@pytest.mark.parametrize(
    ("attempt", "delay"),
    [(0, 0.1), (1, 0.2), (2, 0.4), (3, 0.8), (5, 3.2), (6, 5.0), (50, 5.0), (10**9, 5.0)],
)
def test_reconnect_delay_backs_off_to_a_ceiling(attempt: int, delay: float) -> None:
    assert reconnect_delay(attempt) == pytest.approx(delay)


SSE_CASES = {
    "greeting comment": ([": connected"], ["connected"]),
    "keep-alive comment": ([": ping", ""], ["ping"]),
    "an event ends at the blank line": (
        ["event: job", 'data: {"id": "j1"}', ""],
        ["job"],
    ),
    "two events": (
        ["event: task", "data: {}", "", "event: job", "data: {}", ""],
        ["task", "job"],
    ),
    "a blank line alone is no event": ([""], []),
    "an event without its blank line is not complete": (["event: job", "data: {}"], []),
    "no space after the colon": (["event:job", ""], ["job"]),
    "an empty comment": ([":"], []),
}


@pytest.mark.parametrize("case", SSE_CASES)
def test_sse_lines(case: str) -> None:
    lines, kinds = SSE_CASES[case]
    parser = SseLines()
    got = [kind for line in lines if (kind := parser.feed(line)) is not None]
    assert got == kinds


def progress(status: str = "active", frames: int = 1) -> JobProgress:
    return JobProgress(status, frames, 10, frames, 10, frames / 10)


LINE_CASES = [
    ("the first state", None, progress(), None, True),
    ("nothing changed", progress(), progress(), 5.0, False),
    ("changed within the second", progress(frames=1), progress(frames=2), 0.4, False),
    ("changed after a second", progress(frames=1), progress(frames=2), 1.0, True),
    ("the end, at once", progress(frames=9), progress("completed", 10), 0.01, True),
    ("failed, at once", progress(frames=9), progress("failed", 9), 0.01, True),
]


@pytest.mark.parametrize(
    ("shown", "now", "since", "due"),
    [case[1:] for case in LINE_CASES],
    ids=[case[0] for case in LINE_CASES],
)
def test_line_due(
    shown: JobProgress | None, now: JobProgress, since: float | None, due: bool
) -> None:
    assert line_due(shown, now, since) is due


def test_progress_line_names_job_frames_and_tasks() -> None:
    line = JobProgress("active", 3, 10, 2, 5, 0.4).line("j1")
    assert line == "job j1 active: 3/10 frames, 2/5 tasks, 40%"
