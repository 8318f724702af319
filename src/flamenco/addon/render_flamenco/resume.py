"""Uploads that resume after a dropped connection: the back-off and the header, standard
library only, so that the add-on (inside Blender) and the farm's own clients (through
flamenco.core.byte_ranges) resume alike."""

from __future__ import annotations

RESUME_ATTEMPTS = 8  # failures in a row, without a byte of progress between them
RESUME_FIRST_DELAY_S = 0.5
RESUME_MAX_DELAY_S = 10.0


def resume_delay(failures: int) -> float | None:
    """How long to wait before resuming a transfer after `failures` (1, 2, …) failures in a
    row without progress: 0.5 s doubling to 10 s; None once there were RESUME_ATTEMPTS."""
    if failures > RESUME_ATTEMPTS:
        return None
    return min(RESUME_MAX_DELAY_S, RESUME_FIRST_DELAY_S * 2 ** (failures - 1))


def upload_content_range(offset: int, total: int) -> str:
    """The header of a PUT that sends a file of `total` bytes from byte `offset` on."""
    return f"bytes {offset}-*/{total}"
