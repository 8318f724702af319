"""Table-driven tests for flamenco.core.byte_ranges: where a transfer resumes."""

from __future__ import annotations

import pytest

from flamenco.core.byte_ranges import (
    RESUME_ATTEMPTS,
    ByteRange,
    RangeError,
    UploadRange,
    download_range,
    resume_delay,
    resume_mismatch,
    upload_content_range,
    upload_range,
)


@pytest.mark.parametrize(
    ("header", "size", "expected", "content_range"),
    [
        ("bytes=0-", 100, ByteRange(0, 100), "bytes 0-99/100"),
        ("bytes=40-", 100, ByteRange(40, 100), "bytes 40-99/100"),
        ("bytes=40-49", 100, ByteRange(40, 50), "bytes 40-49/100"),
        ("bytes=40-1000", 100, ByteRange(40, 100), "bytes 40-99/100"),  # clipped to the end
        ("bytes=-10", 100, ByteRange(90, 100), "bytes 90-99/100"),
        ("bytes=-1000", 100, ByteRange(0, 100), "bytes 0-99/100"),
        ("Bytes = 99 -", 100, ByteRange(99, 100), "bytes 99-99/100"),
    ],
)
def test_ranges_that_are_served(
    header: str, size: int, expected: ByteRange, content_range: str
) -> None:
    got = download_range(header, size)
    assert got == expected
    assert got.content_range(size) == content_range


@pytest.mark.parametrize(
    ("header", "size", "sentence"),
    [
        ("bytes=100-", 100, "The range starts at byte 100, but the file has only 100 bytes."),
        ("bytes=50-40", 100, "The range ends at byte 40, before it starts at byte 50."),
        ("bytes=-", 100, "The Range header names no byte ('bytes=N-' or 'bytes=N-M')."),
        ("bytes=-0", 100, "The Range header asks for the last 0 bytes, which is nothing."),
        ("bytes=0-1,5-6", 100, "is not one range of bytes"),
        ("items=0-1", 100, "is not one range of bytes"),
        ("bytes=x-", 100, "is not one range of bytes"),
    ],
)
def test_ranges_that_are_refused_say_why(header: str, size: int, sentence: str) -> None:
    with pytest.raises(RangeError, match=sentence.replace("(", r"\(").replace(")", r"\)")):
        download_range(header, size)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("bytes 0-*/100", UploadRange(0, 100)),
        ("bytes 40-*/100", UploadRange(40, 100)),
        ("bytes 40-99/100", UploadRange(40, 100)),
        ("bytes 100-*/100", UploadRange(100, 100)),  # nothing left: completes what is kept
        ("bytes 0-*/0", UploadRange(0, 0)),  # an empty file
    ],
)
def test_upload_ranges_that_are_taken(header: str, expected: UploadRange) -> None:
    assert upload_range(header) == expected


@pytest.mark.parametrize(
    ("header", "sentence"),
    [
        ("bytes 101-*/100", "The upload resumes at byte 101, past the end of its 100 bytes."),
        ("bytes 0-49/100", "a resumed upload sends the rest of the file, up to byte 99"),
        ("bytes=0-*/100", "is not 'bytes N-\\*/TOTAL'"),
        ("bytes 0-*", "is not 'bytes N-\\*/TOTAL'"),
    ],
)
def test_upload_ranges_that_are_refused_say_why(header: str, sentence: str) -> None:
    with pytest.raises(RangeError, match=sentence):
        upload_range(header)


@pytest.mark.parametrize(
    ("offset", "kept", "sentence"),
    [
        (0, 0, None),
        (0, 500, None),  # byte 0 starts over
        (500, 500, None),
        (
            400,
            500,
            "The upload resumes at byte 400, but 500 bytes of it are kept here; "
            "resume at byte 500.",
        ),
        (
            600,
            500,
            "The upload resumes at byte 600, but 500 bytes of it are kept here; "
            "resume at byte 500.",
        ),
    ],
)
def test_a_resumed_upload_must_start_where_the_kept_bytes_end(
    offset: int, kept: int, sentence: str | None
) -> None:
    assert resume_mismatch(offset, kept) == sentence


def test_the_header_of_a_resumed_upload_reads_back() -> None:
    assert upload_range(upload_content_range(1234, 5678)) == UploadRange(1234, 5678)


def test_resuming_backs_off_and_gives_up_after_the_bound() -> None:
    delays = [resume_delay(n) for n in range(1, RESUME_ATTEMPTS + 2)]
    assert delays[:6] == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0]
    assert all(d == 10.0 for d in delays[5:RESUME_ATTEMPTS])
    assert delays[RESUME_ATTEMPTS] is None
