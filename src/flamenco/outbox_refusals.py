"""What an outbox does with an item the other side refuses (outbox.py): whether the refusal
is for good, and the failure it then reports for the item's task.

A refusal is permanent when it is a 4xx other than 401, 408, 425 and 429 (the client's
`ApiError.transient` says which), or when the same batch gets a server error (5xx other than
502-504) `STRIKES` times in a row. Gateway answers say the other side is not there, nothing
about the item.
"""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass

from flamenco import wire
from flamenco.client import ApiError
from flamenco.core.states import TaskStatus

STRIKES = 5  # server errors in a row for one head batch before it counts as refused for good
ABSENT_STATUSES = (502, 503, 504)
NOT_HELD = 404  # the other side no longer gives this task to us: its end is not ours to report
# Ids of the failures an outbox reports itself: refused in turn, they are only set aside.
OWN_FAILURE_PREFIX = "set-aside-"
MAX_ERROR = 5000  # wire.TaskUpdate.error


@dataclass(frozen=True)
class SetAside:
    """An item the other side refused for good, kept with why and when."""

    seq: int
    kind: str
    payload: str
    task_id: str
    status: int
    reason: str
    set_aside_at: str


class Strikes:
    """The server errors in a row for the batch at the head of the queue."""

    def __init__(self) -> None:
        self._head = (0, 0, 0)  # head seq, batch size, server errors in a row for them

    async def refusal(self, sending: Awaitable[None], head_seq: int, size: int) -> ApiError | None:
        """None when the batch was taken; the refusal when it is for good; else raises."""
        try:
            await sending
        except ApiError as exc:
            if exc.status >= 500 and exc.status not in ABSENT_STATUSES:
                seq, batch_size, strikes = self._head
                same = (seq, batch_size) == (head_seq, size)
                self._head = (head_seq, size, strikes + 1 if same else 1)
                if self._head[2] < STRIKES:
                    raise
            elif exc.transient:
                raise
            self._head = (0, 0, 0)
            return exc
        self._head = (0, 0, 0)
        return None


def as_failure(update: wire.TaskUpdate, reason: str) -> wire.TaskUpdate:
    return update.model_copy(
        update={"status": TaskStatus.FAILED, "error": reason, "activity": "failed"}
    )


def own_failure(task_id: str, worker: str | None, reason: str) -> wire.TaskUpdate:
    """The failure an outbox reports itself for the run of a task whose item it set aside."""
    return wire.TaskUpdate(
        update_id=f"{OWN_FAILURE_PREFIX}{wire.new_update_id()}",
        task_id=task_id,
        worker=worker,
        status=TaskStatus.FAILED,
        error=reason,
        activity="failed",
    )
