"""Following one job to its end over the Server's event stream, as decisions without I/O.

The watcher (cli/watch.py) reads the job again when an event says it may have changed, stops
when the job is in a final status, and reconnects after a dropped stream. The Server begins
every stream with the comment `: connected` once the subscription is in place, so the read
that answers it sees any end that happened before, even while the watcher was disconnected.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from flamenco.core.states import JobStatus

# The exit codes of `flamenco submit --wait` and `flamenco jobs watch`, by final job status.
EXIT_CODES: dict[JobStatus, int] = {
    JobStatus.COMPLETED: 0,
    JobStatus.FAILED: 1,
    JobStatus.CANCELED: 2,
}
FIRST_RECONNECT_S = 0.1
MAX_RECONNECT_S = 5.0
GREETING = "connected"  # the comment that opens every stream of the Server, once subscribed
LINE_EVERY_S = 1.0  # progress lines on a stderr that is not a terminal: at most one a second


class Reaction(StrEnum):
    REREAD = "reread"
    IGNORE = "ignore"


# What each thing on the stream means for a watcher of one job. A task, frame or log event
# always comes with a job event for the same change, so the job event alone wakes the
# watcher. A keep-alive ping (every 15 s) costs a read: a safety net that a change published
# nowhere is still seen within a ping.
REACTIONS: dict[str, Reaction] = {
    GREETING: Reaction.REREAD,
    "job": Reaction.REREAD,
    "ping": Reaction.REREAD,
}


def reaction(kind: str) -> Reaction:
    """What to do on an event or comment named `kind` (see SseLines)."""
    return REACTIONS.get(kind, Reaction.IGNORE)


def exit_code(status: str) -> int | None:
    """The exit code once the job is in `status`; None while it is not over."""
    try:
        return EXIT_CODES.get(JobStatus(status))
    except ValueError:
        return None


def reconnect_delay(attempt: int) -> float:
    """Seconds to wait before reconnection number `attempt` (0 = the first after a drop)."""
    return min(FIRST_RECONNECT_S * 2 ** min(attempt, 16), MAX_RECONNECT_S)


class SseLines:
    """Server-sent-event lines in, the names of complete events out.

    `event: job` ... blank line gives "job"; a comment line `: ping` gives "ping" at once
    (the Server sends its keep-alives and its `connected` greeting as comments).
    """

    def __init__(self) -> None:
        self.kind: str | None = None

    def feed(self, line: str) -> str | None:
        if line.startswith(":"):
            return line[1:].strip() or None
        if line.startswith("event:"):
            self.kind = line.removeprefix("event:").strip()
            return None
        if line == "":
            kind, self.kind = self.kind, None
            return kind
        return None  # data, id and retry fields: the watcher reads the job itself


@dataclass(frozen=True)
class JobProgress:
    """What a progress line says about a job."""

    status: str
    frames_done: int
    frames_total: int
    tasks_completed: int
    tasks_total: int
    progress: float

    def line(self, job_id: str) -> str:
        return (
            f"job {job_id} {self.status}: {self.frames_done}/{self.frames_total} frames, "
            f"{self.tasks_completed}/{self.tasks_total} tasks, {self.progress:.0%}"
        )


def line_due(
    shown: JobProgress | None, now_showing: JobProgress, since_last_s: float | None
) -> bool:
    """Whether a plain progress line is printed now: when something changed and a second
    has passed since the last line, and always for the first state and the final one."""
    if shown is None or since_last_s is None:
        return True
    if now_showing == shown:
        return False
    return exit_code(now_showing.status) is not None or since_last_s >= LINE_EVERY_S
