"""Counting and backing off the clients' blob transfers that resume (client.py).

A transfer that drops or stalls is taken up again where it stopped: a download from the bytes
received (Range), an upload from the offset the receiver reports. `Resumption` bounds the
failures in a row that made no progress; `TransferCounters` keeps what each client moved.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flamenco.core.byte_ranges import resume_delay, upload_content_range

UPLOAD_CHUNK = 1024 * 1024
TRANSFER_STALL_S = 30.0  # a blob transfer silent this long is dropped and resumed
log = logging.getLogger("flamenco.transfers")


@dataclass
class TransferCounters:
    """What a client's blob transfers cost, for logs and tests: bytes that arrived or left,
    how often a transfer resumed, and the bytes an upload sent again because the other side
    had not kept them (in flight when the connection dropped)."""

    received: int = 0
    sent: int = 0
    resumes: int = 0
    resent: int = 0


class Resumption:
    """The back-off of one transfer: failures in a row without progress are bounded."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.failures = 0
        self.progress_at_failure = -1

    def next_delay(self, position: int, exc: Exception) -> float | None:
        if position > self.progress_at_failure:
            self.failures = 0  # it moved since the last failure: a new run of attempts
        self.progress_at_failure = position
        self.failures += 1
        delay = resume_delay(self.failures)
        if delay is not None:
            log.warning(
                "%s dropped at byte %d (%s); resuming in %.1f s (attempt %d)",
                self.what,
                position,
                exc.__class__.__name__,
                delay,
                self.failures,
            )
        return delay


def file_chunks(
    source: Path, offset: int, counters: TransferCounters, progress: Any = None
) -> Iterator[bytes]:
    with source.open("rb") as f:
        f.seek(offset)
        while chunk := f.read(UPLOAD_CHUNK):
            counters.sent += len(chunk)
            if progress is not None:
                progress(len(chunk))
            yield chunk


def upload_headers(sha256: str, offset: int, size: int) -> dict[str, str]:
    return {
        "X-Flamenco-SHA256": sha256,
        "Content-Length": str(size - offset),
        "Content-Range": upload_content_range(offset, size),
    }
