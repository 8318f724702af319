"""Frame ranges: parse the text users type, format frame lists back, split them into chunks.

Frame ranges arrive from users (the add-on, the dashboard, the CLI), so every parse error
must be one sentence that tells the user exactly which part of their text is wrong.
"""

import re
from collections.abc import Iterable, Sequence

MAX_FRAMES = 100_000
"""A range expanding to more frames than this is refused, so one typo cannot flood the server."""

MAX_FRAME_NUMBER = 1_048_574
"""Blender's own upper frame limit (MAXFRAME); larger numbers can never be rendered."""

_DIGITS = re.compile(r"[0-9]+")  # ASCII only: int() would also accept e.g. Arabic-Indic digits.
_STEP_MARKER = re.compile(r"(?<=[0-9])\s*x")
_QUOTE_LIMIT = 60


class FrameRangeError(ValueError):
    """A frame range or chunk size is unusable; the message is one sentence for the user."""


def quote_for_message(value: object, limit: int = _QUOTE_LIMIT) -> str:
    """Quote user input for an error message, shortened so a huge input cannot bloat the log.

    repr() escapes newlines and control characters, which keeps the message one line; it
    also shows non-text values as themselves ("3.5", "None") so their type is visible.
    """
    if not isinstance(value, str):
        text = repr(value)
        return text if len(text) <= limit else text[:limit] + "…"
    return repr(value if len(value) <= limit else value[:limit] + "…")


def clip(text: str, limit: int) -> str:
    """`text`, or its first `limit` - 1 characters and "…" when it is longer than `limit`:
    for a field with a bound (an error sentence, a label in a drawing)."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def parse_frame_range(text: str) -> list[int]:
    """Parse ``"1-10,15,20-24x2"`` into the sorted unique frames it names.

    Items are separated by commas and may be surrounded by spaces. An item is a single
    frame ``N``, an inclusive range ``A-B`` with ``A <= B``, or a stepped range ``A-BxS``
    (every S-th frame from A up to B). Frames are whole numbers from 0 to MAX_FRAME_NUMBER.
    """
    if not text.strip():
        raise FrameRangeError(f"Frame range {quote_for_message(text)} is empty.")
    frames: set[int] = set()
    for position, item in enumerate(text.split(","), start=1):
        try:
            frames.update(_parse_item(item.strip(), position))
        except _ItemError as err:
            raise FrameRangeError(
                f"Frame range {quote_for_message(text)} is invalid: {err.reason}."
            ) from None
        # Checked per item so the set never grows far past the limit before we stop.
        if len(frames) > MAX_FRAMES:
            raise FrameRangeError(
                f"Frame range {quote_for_message(text)} is invalid: "
                f"it expands to more than {MAX_FRAMES} frames."
            )
    return sorted(frames)


class _ItemError(Exception):
    """Internal: why one item is bad, without the sentence framing added by the caller."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _parse_item(item: str, position: int) -> range:
    """Parse one comma-separated item into a range; lazy, so its size is known before use."""
    if not item:
        raise _ItemError(f"item {position} is empty")
    first_text, dash, rest = item.partition("-")
    first = _parse_number(first_text, item, "first frame")
    if not dash:
        return range(first, first + 1)
    last_text, step_text = _split_step(rest)
    last = _parse_number(last_text, item, "last frame")
    step = 1 if step_text is None else _parse_number(step_text, item, "step")
    if step < 1:
        raise _ItemError(f"step {step} in {quote_for_message(item)} must be at least 1")
    if last < first:
        fixed = f"{last}-{first}" + ("" if step_text is None else f"x{step}")
        raise _ItemError(
            f"{quote_for_message(item)} runs backwards; write {quote_for_message(fixed)}"
        )
    frames = range(first, last + 1, step)
    if len(frames) > MAX_FRAMES:
        raise _ItemError(f"{quote_for_message(item)} expands to more than {MAX_FRAMES} frames")
    return frames


def _split_step(rest: str) -> tuple[str, str | None]:
    """Split "10x2" into ("10", "2"); without a step marker the step part is None.

    Only an 'x' right after a digit marks a step, so in "1-x" the 'x' is reported as the
    bad last frame instead of as a missing one.
    """
    marker = _STEP_MARKER.search(rest)
    if marker is None:
        return rest, None
    return rest[: marker.start()], rest[marker.end() :]


def _parse_number(token: str, item: str, role: str) -> int:
    """Parse one whole number of an item; `role` names it when it is missing."""
    token = token.strip()
    if not token:
        raise _ItemError(f"{quote_for_message(item)} is missing its {role}")
    if not _DIGITS.fullmatch(token):
        raise _ItemError(f"{quote_for_message(token)} is not a whole number")
    # The length check comes first: int() refuses strings over 4300 digits with its own error.
    if len(token) > len(str(MAX_FRAME_NUMBER)) or int(token) > MAX_FRAME_NUMBER:
        raise _ItemError(f"{quote_for_message(token)} is larger than {MAX_FRAME_NUMBER}")
    return int(token)


def format_frame_range(frames: Iterable[int]) -> str:
    """Format frames compactly, the inverse of parse_frame_range: [1,2,3,5,7,8] -> "1-3,5,7-8".

    Input order and duplicates do not matter. Runs of two frames are written as ``7-8``
    rather than ``7,8`` so that every run looks the same.
    """
    parts: list[str] = []
    for first, last in _runs(sorted(set(frames))):
        parts.append(str(first) if first == last else f"{first}-{last}")
    return ",".join(parts)


def _runs(frames: Sequence[int]) -> list[tuple[int, int]]:
    """Group sorted unique frames into (first, last) runs of consecutive numbers."""
    runs: list[tuple[int, int]] = []
    for frame in frames:
        if runs and runs[-1][1] == frame - 1:
            runs[-1] = (runs[-1][0], frame)
        else:
            runs.append((frame, frame))
    return runs


def chunk_frames(frames: Sequence[int], chunk_size: int) -> list[list[int]]:
    """Split frames, in their given order, into consecutive chunks of at most chunk_size.

    Chunks follow list position, not frame numbers: a chunk may span a gap (10, 15, 20)
    so that every task gets the same amount of work.
    """
    if chunk_size < 1:
        raise FrameRangeError(f"Chunk size must be at least 1, got {chunk_size}.")
    return [list(frames[start : start + chunk_size]) for start in range(0, len(frames), chunk_size)]
