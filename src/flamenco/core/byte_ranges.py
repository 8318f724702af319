"""Resuming transfers: the byte ranges of HTTP that say where a blob resumes.

Downloads resume with `Range: bytes=N-` (or `bytes=N-M`), answered 206 with
`Content-Range: bytes N-M/SIZE`. Uploads resume with `Content-Range: bytes N-*/TOTAL` on the
PUT: the body appends at byte N of what the receiver already kept. Only one range is served:
a transfer that resumes needs no more, and several would be a multipart answer.

Pure: each function takes header text and sizes, and answers a range or raises RangeError
with the sentence the caller sends back (416).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# The add-on resumes its uploads too, inside Blender without this package: the back-off and
# the upload header live in its stdlib module and are used from there.
from flamenco.addon.render_flamenco.resume import (
    RESUME_ATTEMPTS,
    RESUME_FIRST_DELAY_S,
    RESUME_MAX_DELAY_S,
    resume_delay,
    upload_content_range,
)

__all__ = [
    "RESUME_ATTEMPTS",
    "RESUME_FIRST_DELAY_S",
    "RESUME_MAX_DELAY_S",
    "ByteRange",
    "RangeError",
    "UploadRange",
    "download_range",
    "resume_delay",
    "resume_mismatch",
    "upload_content_range",
    "upload_range",
]

_RANGE = re.compile(r"^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$", re.IGNORECASE)
_UPLOAD_RANGE = re.compile(r"^\s*bytes\s+(\d+)\s*-\s*(\*|\d+)\s*/\s*(\d+)\s*$", re.IGNORECASE)


class RangeError(ValueError):
    """A range that cannot be served or taken; the message is the one sentence to answer."""


@dataclass(frozen=True)
class ByteRange:
    start: int  # first byte
    end: int  # one past the last byte

    @property
    def length(self) -> int:
        return self.end - self.start

    def content_range(self, size: int) -> str:
        return f"bytes {self.start}-{self.end - 1}/{size}"


def download_range(header: str, size: int) -> ByteRange:
    """The bytes of a `size`-byte file that a Range header asks for.

    `bytes=N-` (from N to the end), `bytes=N-M` (M inclusive, clipped to the end) and
    `bytes=-K` (the last K bytes)."""
    match = _RANGE.match(header)
    if match is None:
        raise RangeError(
            f"The Range header '{header[:80]}' is not one range of bytes "
            "('bytes=N-' or 'bytes=N-M')."
        )
    first, last = match.groups()
    if not first and not last:
        raise RangeError("The Range header names no byte ('bytes=N-' or 'bytes=N-M').")
    if not first:  # a suffix: the last K bytes
        suffix = int(last)
        if suffix == 0:
            raise RangeError("The Range header asks for the last 0 bytes, which is nothing.")
        return ByteRange(max(0, size - suffix), size)
    start = int(first)
    if start >= size:
        raise RangeError(f"The range starts at byte {start}, but the file has only {size} bytes.")
    end = size if not last else min(size, int(last) + 1)
    if end <= start:
        raise RangeError(f"The range ends at byte {last}, before it starts at byte {start}.")
    return ByteRange(start, end)


@dataclass(frozen=True)
class UploadRange:
    offset: int  # where this body's first byte goes
    total: int  # the size of the whole file


def upload_range(header: str) -> UploadRange:
    """`Content-Range: bytes N-*/TOTAL` (or `bytes N-M/TOTAL`) of an upload that resumes."""
    match = _UPLOAD_RANGE.match(header)
    if match is None:
        raise RangeError(f"The Content-Range header '{header[:80]}' is not 'bytes N-*/TOTAL'.")
    offset, last, total = int(match[1]), match[2], int(match[3])
    if offset > total:
        raise RangeError(f"The upload resumes at byte {offset}, past the end of its {total} bytes.")
    if last != "*" and int(last) + 1 != total:
        raise RangeError(
            f"The upload's range ends at byte {last}; a resumed upload sends the rest of the "
            f"file, up to byte {total - 1}."
        )
    return UploadRange(offset, total)


def resume_mismatch(offset: int, kept: int) -> str | None:
    """The sentence for an upload resuming at `offset` when `kept` bytes are kept, or None
    when it fits. Offset 0 always fits: it starts over."""
    if offset == 0 or offset == kept:
        return None
    return (
        f"The upload resumes at byte {offset}, but {kept} bytes of it are kept here; "
        f"resume at byte {kept}."
    )
