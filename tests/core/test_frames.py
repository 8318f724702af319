"""Table-driven tests for flamenco.core.frames."""

import pytest

from flamenco.core.frames import (
    MAX_FRAMES,
    FrameRangeError,
    chunk_frames,
    clip,
    format_frame_range,
    parse_frame_range,
    quote_for_message,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0", [0]),
        ("5", [5]),
        ("1-3", [1, 2, 3]),
        ("3-3", [3]),
        ("1-10,15,20-24", [*range(1, 11), 15, *range(20, 25)]),
        (" 1 - 3 , 7 ", [1, 2, 3, 7]),
        ("\t4,2\n", [2, 4]),
        ("5,1,3", [1, 3, 5]),
        ("1-5,3-7", [1, 2, 3, 4, 5, 6, 7]),
        ("2,2,2", [2]),
        ("1-10x2", [1, 3, 5, 7, 9]),
        ("1-10x3", [1, 4, 7, 10]),
        ("0-10x5", [0, 5, 10]),
        ("1-10 x 4", [1, 5, 9]),
        ("1-1x7", [1]),
        ("1-10x1", list(range(1, 11))),
        ("1-3x100", [1]),
        ("007", [7]),
        ("1048574", [1048574]),
        (f"1-{MAX_FRAMES}", list(range(1, MAX_FRAMES + 1))),
        (f"0-{MAX_FRAMES - 1},0-{MAX_FRAMES - 1}", list(range(MAX_FRAMES))),
    ],
)
def test_parse_frame_range(text: str, expected: list[int]) -> None:
    assert parse_frame_range(text) == expected


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "Frame range '' is empty."),
        ("   ", "is empty."),
        ("1,,2", "item 2 is empty."),
        (",1", "item 1 is empty."),
        ("1,", "item 2 is empty."),
        ("1-x", "Frame range '1-x' is invalid: 'x' is not a whole number."),
        ("abc", "'abc' is not a whole number."),
        ("1.5", "'1.5' is not a whole number."),
        ("1 2", "'1 2' is not a whole number."),
        ("5x2", "'5x2' is not a whole number."),
        ("1-10X2", "'10X2' is not a whole number."),
        ("1-10x2x3", "'2x3' is not a whole number."),
        ("1-x2", "'x2' is not a whole number."),
        ("+3", "'+3' is not a whole number."),
        ("١٢", "'١٢' is not a whole number."),
        ("-5", "'-5' is missing its first frame."),
        ("5--1", "'-1' is not a whole number."),
        ("1-", "'1-' is missing its last frame."),
        ("1-10x", "'1-10x' is missing its step."),
        ("10-1", "'10-1' runs backwards; write '1-10'."),
        ("3,10-1x2", "'10-1x2' runs backwards; write '1-10x2'."),
        ("1-10x0", "step 0 in '1-10x0' must be at least 1."),
        ("1048575", "'1048575' is larger than 1048574."),
        ("9" * 5000, "is larger than 1048574."),
        (f"0-{MAX_FRAMES}", f"'0-{MAX_FRAMES}' expands to more than {MAX_FRAMES} frames."),
        ("0-60000,70000-130000", f"it expands to more than {MAX_FRAMES} frames."),
    ],
)
def test_parse_frame_range_errors(text: str, fragment: str) -> None:
    with pytest.raises(FrameRangeError) as caught:
        parse_frame_range(text)
    message = str(caught.value)
    assert fragment in message
    assert message.endswith(".")
    assert message.startswith(f"Frame range {quote_for_message(text)} ")
    assert "\n" not in message


@pytest.mark.parametrize(
    ("frames", "expected"),
    [
        ([], ""),
        ([1], "1"),
        ([1, 2, 3, 5, 7, 8], "1-3,5,7-8"),
        ([8, 7, 5, 3, 2, 1], "1-3,5,7-8"),
        ([1, 1, 2, 2], "1-2"),
        ([0, 2, 4], "0,2,4"),
        (range(1, 101), "1-100"),
        ((10, 15, 20), "10,15,20"),
        ({3, 4}, "3-4"),
    ],
)
def test_format_frame_range(frames: list[int], expected: str) -> None:
    assert format_frame_range(frames) == expected


@pytest.mark.parametrize(
    "text",
    ["1", "1-3,5,7-8", "0-10,12,14-20", "1-10,15,20-24", "100-200,1000"],
)
def test_format_parse_round_trip(text: str) -> None:
    frames = parse_frame_range(text)
    assert format_frame_range(frames) == text
    assert parse_frame_range(format_frame_range(frames)) == frames


@pytest.mark.parametrize(
    ("text", "chunk_size", "expected"),
    [
        (
            "1-10,15,20-24",
            3,
            [[1, 2, 3], [4, 5, 6], [7, 8, 9], [10, 15, 20], [21, 22, 23], [24]],
        ),
        ("1-5", 1, [[1], [2], [3], [4], [5]]),
        ("1-5", 5, [[1, 2, 3, 4, 5]]),
        ("1-5", 100, [[1, 2, 3, 4, 5]]),
        ("1-6", 2, [[1, 2], [3, 4], [5, 6]]),
        ("7", 4, [[7]]),
    ],
)
def test_chunk_frames(text: str, chunk_size: int, expected: list[list[int]]) -> None:
    assert chunk_frames(parse_frame_range(text), chunk_size) == expected


def test_chunk_frames_empty() -> None:
    assert chunk_frames([], 3) == []


@pytest.mark.parametrize(
    ("chunk_size", "message"),
    [
        (0, "Chunk size must be at least 1, got 0."),
        (-3, "Chunk size must be at least 1, got -3."),
    ],
)
def test_chunk_frames_errors(chunk_size: int, message: str) -> None:
    with pytest.raises(FrameRangeError) as caught:
        chunk_frames([1, 2, 3], chunk_size)
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("abc", "'abc'"),
        ("a\nb", "'a\\nb'"),
        (3, "3"),
        (3.5, "3.5"),
        (None, "None"),
        (list(range(100)), repr(list(range(100)))[:60] + "…"),
        ("x" * 100, "'" + "x" * 60 + "…'"),
    ],
)
def test_quote_for_message(value: object, expected: str) -> None:
    assert quote_for_message(value) == expected


@pytest.mark.parametrize(
    ("text", "limit", "expected"),
    [
        ("render-01", 22, "render-01"),
        ("abcde", 5, "abcde"),  # at the bound: kept whole
        ("abcdef", 5, "abcd…"),  # past it: the bound, the ellipsis included
        ("", 1, ""),
    ],
)
def test_clip(text: str, limit: int, expected: str) -> None:
    assert clip(text, limit) == expected
    assert len(clip(text, limit)) <= limit
