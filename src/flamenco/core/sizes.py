"""Sizes of disk space as people write them: `20GB`, `500 MB`, `1.5TiB`, `0` or `unlimited`.

Decimal units (kB, MB, GB, TB) are powers of 1000 and binary ones (KiB, MiB, GiB, TiB) powers
of 1024, as disk makers and `df -H` / `df -h` count them; a bare number is bytes. Case and
spaces do not matter. `0`, `none` and `unlimited` mean no bound at all, returned as 0.
"""

from __future__ import annotations

import math
import re

UNLIMITED = 0  # what parse_size returns for "no bound"
UNLIMITED_WORDS = ("unlimited", "none", "off")

UNITS: dict[str, int] = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "m": 1000**2,
    "mb": 1000**2,
    "g": 1000**3,
    "gb": 1000**3,
    "t": 1000**4,
    "tb": 1000**4,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
}

_SIZE = re.compile(r"^(\d+(?:\.\d*)?|\.\d+)\s*([a-z]*)$")


def parse_size(value: str | int | float) -> int:
    """Bytes of a size such as `20GB` or `1.5TiB`; 0 (UNLIMITED) for `0` or `unlimited`.

    Raises ValueError with one sentence when the value is not a size.
    """
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a size; {_HINT}")
    if isinstance(value, int | float):
        return _whole_bytes(float(value), str(value))
    text = value.strip().lower()
    if text in UNLIMITED_WORDS:
        return UNLIMITED
    match = _SIZE.match(text)
    if match is None or match[2] not in UNITS:
        raise ValueError(f"{value.strip()!r} is not a size; {_HINT}")
    return _whole_bytes(float(match[1]) * UNITS[match[2]], value.strip())


def _whole_bytes(amount: float, written: str) -> int:
    if not math.isfinite(amount) or amount < 0:
        raise ValueError(f"{written!r} is not a size; {_HINT}")
    return math.ceil(amount) if amount < 1 else int(amount)


def format_size(size: int) -> str:
    """A size for people to read, in decimal units (`40.0 MB`); 0 reads `unlimited`."""
    if size == UNLIMITED:
        return "unlimited"
    for unit, factor in (("TB", 1000**4), ("GB", 1000**3), ("MB", 1000**2), ("kB", 1000)):
        if size >= factor:
            return f"{size / factor:.1f} {unit}"
    return f"{size} B"


_HINT = "write it like 20GB, 500MB or 1.5TiB, or 0 or unlimited for no limit."
