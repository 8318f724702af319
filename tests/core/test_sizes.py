"""Table-driven tests for flamenco.core.sizes: the sizes of disk caches people write."""

from __future__ import annotations

import pytest

from flamenco.core.sizes import UNLIMITED, format_size, parse_size


@pytest.mark.parametrize(
    ("written", "size"),
    [
        ("20GB", 20 * 1000**3),
        ("20 gb", 20 * 1000**3),
        ("500MB", 500 * 1000**2),
        ("40M", 40 * 1000**2),
        ("1.5TiB", int(1.5 * 1024**4)),
        ("2GiB", 2 * 1024**3),
        ("10KiB", 10 * 1024),
        ("3kB", 3000),
        ("1024", 1024),
        ("1024b", 1024),
        ("  7 TB ", 7 * 1000**4),
        (".5MB", 500_000),
        ("0.5", 1),  # less than a byte is a byte, never "unlimited" by rounding
        ("0", UNLIMITED),
        ("0GB", UNLIMITED),
        ("unlimited", UNLIMITED),
        ("Unlimited", UNLIMITED),
        ("none", UNLIMITED),
        (40_000_000, 40_000_000),  # from TOML: a number of bytes
        (0, UNLIMITED),
    ],
)
def test_sizes_that_parse(written: str | int, size: int) -> None:
    assert parse_size(written) == size


@pytest.mark.parametrize(
    "written",
    ["", "GB", "twenty GB", "20 XB", "-5GB", "20GB extra", "1e3", "nan", "inf", "20 G B", True, -1],
)
def test_sizes_that_do_not_parse_say_how_to_write_one(written: str | int) -> None:
    with pytest.raises(ValueError, match=r"is not a size; write it like 20GB, 500MB or 1\.5TiB"):
        parse_size(written)


@pytest.mark.parametrize(
    ("size", "text"),
    [
        (UNLIMITED, "unlimited"),
        (999, "999 B"),
        (40 * 1000**2, "40.0 MB"),
        (20 * 1000**3, "20.0 GB"),
        (1536, "1.5 kB"),
    ],
)
def test_sizes_read_back_in_decimal_units(size: int, text: str) -> None:
    assert format_size(size) == text
